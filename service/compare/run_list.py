"""The MLflow runs that are no job a user may see, newest first, a page at a time (what
GET /api/v1/runs lists and a comparison can then take): their own; a course's instructors and
TAs the course's (and those made by the course's jobs); admins all. This is the tracking API's
rule for runs (service/tracking/principal.py, search.py) as one SQL condition. A deleted run, or
one in a deleted experiment, is not listed."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from service.compare.runs import STATUS
from service.core.errors import SpecError
from service.core.orm import TrackingExperiment, TrackingRun, User
from service.tracking import store
from service.tracking.principal import RunRef, UserPrincipal, runs_seen

ACTIVE = "active"
MAX_LISTED_METRICS = 50  # latest values shown per run (by name); metric_count says how many it has
CURSOR = re.compile(r"(-?\d{1,19})\.([0-9a-f]{32})")  # start time and id of the page's last run
MAX_NAME = 500  # an experiment's or a user's name is no longer


@dataclass(frozen=True)
class RunFilters:
    experiment: str | None = None  # an experiment's id or name
    owner: str | None = None  # a user's name


def parse_cursor(raw: str | None) -> tuple[int, str] | None:
    if raw is None:
        return None
    match = CURSOR.fullmatch(raw)
    if match is None or not -(2**63) <= int(match.group(1)) < 2**63:  # a start time is a BIGINT
        raise SpecError("cursor must be the next_cursor of a previous page", field="cursor")
    return int(match.group(1)), match.group(2)


def parse_filters(experiment: str | None, owner: str | None) -> RunFilters:
    for field, value in (("experiment", experiment), ("owner", owner)):
        if value is not None and (len(value) > MAX_NAME or "\x00" in value):
            raise SpecError(f"{field} must be a name of at most {MAX_NAME} characters", field=field)
    return RunFilters(experiment=experiment, owner=owner)


def list_runs(
    session: Session, user: User, filters: RunFilters, limit: int, cursor: tuple[int, str] | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of runs as the API shows them, and the cursor of the next page (None at the end)."""
    query = (
        select(TrackingRun, TrackingExperiment, User.name)
        .join(TrackingExperiment, TrackingExperiment.id == TrackingRun.experiment_id)
        .join(User, User.id == TrackingRun.owner_id)
        .where(
            TrackingRun.job_id.is_(None),
            TrackingRun.lifecycle_stage == ACTIVE,
            TrackingExperiment.lifecycle_stage == ACTIVE,
            runs_seen(UserPrincipal(user)),
        )
        .order_by(TrackingRun.start_time.desc(), TrackingRun.id.desc())
        .limit(limit + 1)
    )
    if filters.experiment is not None:
        named = TrackingExperiment.name == filters.experiment
        if filters.experiment.isascii() and filters.experiment.isdigit() and len(filters.experiment) < 10:
            named = or_(named, TrackingExperiment.id == int(filters.experiment))
        query = query.where(named)
    if filters.owner is not None:
        query = query.where(User.name == filters.owner)
    if cursor is not None:
        start, run_id = cursor
        query = query.where(
            or_(
                TrackingRun.start_time < start,
                and_(TrackingRun.start_time == start, TrackingRun.id < run_id),
            )
        )
    rows = session.execute(query).all()
    page = rows[:limit]
    runs = store.load_runs(session, [RunRef(row.id, row.owner_id, None, row) for row, _exp, _owner in page])
    items = [_view(row, experiment, owner, run) for (row, experiment, owner), run in zip(page, runs)]
    last = page[-1][0] if page else None
    next_cursor = f"{last.start_time}.{last.id}" if len(rows) > limit and last is not None else None
    return items, next_cursor


def _view(row: TrackingRun, experiment: TrackingExperiment, owner: str, run) -> dict[str, Any]:
    metrics = {k: v for k, v in sorted(run.data.metrics.items()) if math.isfinite(v)}
    return {
        "id": row.id,
        "name": row.name,
        "experiment": {"id": str(experiment.id), "name": experiment.name},
        "owner": owner,
        "status": STATUS.get(row.status, row.status.lower()),
        "start_time": _iso(row.start_time),
        "end_time": _iso(row.end_time),
        "param_count": len(run.data.params),
        "metric_count": len(metrics),
        "metrics": dict(list(metrics.items())[:MAX_LISTED_METRICS]),
    }


def _iso(millis: int | None) -> str | None:
    """MLflow's milliseconds as the API's other times are written (ISO-8601, UTC)."""
    if millis is None:
        return None
    try:
        moment = datetime.fromtimestamp(millis / 1000, UTC)
    except (OverflowError, OSError, ValueError):  # a start time no calendar holds, as a client sent it
        return None
    return moment.isoformat().replace("+00:00", "Z")
