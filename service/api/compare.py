"""GET /api/v1/compare: jobs side by side (their parameters, final metrics and curves, and what
differs), as JSON or CSV. The gathering is service/compare's."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, request

from service.api.auth import current_user, db_session
from service.compare import gather
from service.compare.comparison import Comparison
from service.compare.csv_export import comparison_csv
from service.core.errors import SpecError

bp = Blueprint("compare", __name__, url_prefix="/api/v1/compare")
FORMATS = ("json", "csv")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.get("")
def compare():
    ids, search = request.args.get("ids"), request.args.get("search")
    if (ids is None) == (search is None):
        raise SpecError("give either ids=ID,ID,... (2 to 50 jobs) or search=<a search's id>", field="ids")
    as_csv = _wants_csv()
    session, user = db_session(), current_user()
    if ids is not None:
        comparison = Comparison(gather.by_ids(session, user, gather.parse_ids(ids)))
        filename = "compare.csv"
    else:
        comparison = Comparison(*gather.search_trials(session, user, search))
        filename = f"search-{search}-trials.csv"
    if not as_csv:
        return comparison.view()
    return Response(
        comparison_csv(comparison),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _wants_csv() -> bool:
    """?format=csv, or an Accept header that prefers text/csv to JSON."""
    chosen = request.args.get("format")
    if chosen is not None and chosen not in FORMATS:
        raise SpecError(f"format must be json or csv, not {chosen!r}", field="format")
    if chosen is not None:
        return chosen == "csv"
    return request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv"
