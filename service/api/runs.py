"""GET /api/v1/runs: the MLflow runs that are no job the caller may see (a laptop's, logged with
MLFLOW_TRACKING_URI set to labtrain), newest first, paged as the jobs list is. The listing is
service/compare/run_list.py's; GET /api/v1/compare takes their ids beside jobs'."""

from __future__ import annotations

from flask import Blueprint, Flask, request

from service.api.auth import current_user, db_session
from service.api.requests import int_arg
from service.compare.run_list import list_runs, parse_cursor, parse_filters

bp = Blueprint("runs", __name__, url_prefix="/api/v1/runs")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.get("")
def runs():
    filters = parse_filters(request.args.get("experiment") or None, request.args.get("owner") or None)
    limit = int_arg("limit", 50, 1, 500)
    cursor = parse_cursor(request.args.get("cursor") or None)
    items, next_cursor = list_runs(db_session(), current_user(), filters, limit, cursor)
    return {"items": items, "next_cursor": next_cursor}
