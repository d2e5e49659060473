"""Where MLflow runs that are no job join a comparison.

A comparison's ids may name jobs or runs; `gather` looks for jobs first (a job's MLflow run id
names the job itself) and hands the ids no job answered to `find_runs`: the runs logged from a
laptop (MLFLOW_TRACKING_URI set to labtrain) that the caller may read by the tracking API's own
rule (owner, the course's staff, admins), as items of kind RUN: their params, their metrics'
last values, their histories as curves (x = step), their name and experiment."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.compare.items import RUN, STEP, CompareItem, Series
from service.compare.series import MAX_POINTS, MAX_SERIES, thin
from service.core.orm import TrackingExperiment, TrackingMetric, User
from service.tracking import store
from service.tracking.errors import TrackingError
from service.tracking.principal import RunRef, UserPrincipal, readable_run
from service.tracking.runs import JOB_STATUS, job_id_of

# A run's status as a job's words, so a run and a job that both ended well read the same.
STATUS = {mlflow: ours for ours, mlflow in JOB_STATUS.items()}
MAX_ROWS_PER_KEY = 4 * MAX_POINTS  # a key's points read for its curve; past it, every k-th row
MAX_PARAM_TEXT = 40  # longer texts stay text: no number is written that long


def find_runs(session: Session, user: User, ids: list[str]) -> dict[str, CompareItem]:
    """The runs among `ids` that `user` may see, by id; a job's run id is none of them (the job
    answers for it, or nothing does)."""
    refs = []
    for run_id in dict.fromkeys(ids):
        if job_id_of(run_id) is not None:
            continue
        try:
            refs.append(readable_run(session, UserPrincipal(user), run_id))
        except TrackingError:  # missing, or not theirs: the 404 an unknown id gets
            continue
    return {item.id: item for item in run_items(session, refs)}


def run_items(session: Session, refs: list[RunRef]) -> list[CompareItem]:
    runs = store.load_runs(session, refs)
    experiments = experiment_names(session, {ref.row.experiment_id for ref in refs})
    items = []
    for ref, run in zip(refs, runs):
        series, sampled = run_series(session, ref.run_id)
        items.append(
            CompareItem(
                id=ref.run_id,
                kind=RUN,
                name=run.info.run_name or None,
                status=STATUS.get(run.info.status, run.info.status.lower()),
                params={key: param_value(value) for key, value in sorted(run.data.params.items())},
                metrics={k: v for k, v in sorted(run.data.metrics.items()) if math.isfinite(v)},
                series=series,
                owner=run.info.user_id or None,
                experiment=experiments.get(ref.row.experiment_id),
                downsampled=sampled,
            )
        )
    return items


def experiment_names(session: Session, experiment_ids: set[int]) -> dict[int, str]:
    if not experiment_ids:
        return {}
    query = select(TrackingExperiment.id, TrackingExperiment.name).where(TrackingExperiment.id.in_(experiment_ids))
    return dict(session.execute(query).all())


def param_value(text: str) -> Any:
    """An MLflow param (always text) as a job's spec would hold it: a number, true or false
    where the text is one, so `lr` = "0.01" and a job's 0.01 compare as the same."""
    if text in ("True", "true", "False", "false"):
        return text in ("True", "true")
    if len(text) > MAX_PARAM_TEXT or not text or text.strip() != text:
        return text
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def run_series(session: Session, run_id: str) -> tuple[dict[str, Series], bool]:
    """A run's curves from its metric rows: x = step, one point per step (the last logged at
    that step, as MLflow's latest value is), at most MAX_SERIES keys (by name) and MAX_POINTS
    points a curve. A key with very many rows is read as every k-th row; True if any was."""
    keys = (
        select(TrackingMetric.key)
        .where(TrackingMetric.run_id == run_id)
        .group_by(TrackingMetric.key)
        .order_by(TrackingMetric.key)
        .limit(MAX_SERIES)
    )
    order = (TrackingMetric.step, TrackingMetric.timestamp, TrackingMetric.id)
    ranked = (
        select(
            TrackingMetric.key,
            TrackingMetric.step,
            TrackingMetric.value,
            func.row_number().over(partition_by=TrackingMetric.key, order_by=order).label("rank"),
            func.count().over(partition_by=TrackingMetric.key).label("rows"),
        )
        .where(TrackingMetric.run_id == run_id, TrackingMetric.key.in_(keys))
        .subquery()
    )
    stride = (ranked.c.rows + MAX_ROWS_PER_KEY - 1) // MAX_ROWS_PER_KEY
    rows = session.execute(
        select(ranked.c.key, ranked.c.step, ranked.c.value, ranked.c.rows)
        .where((ranked.c.rows <= MAX_ROWS_PER_KEY) | (ranked.c.rank % stride == 0))
        .order_by(ranked.c.key, ranked.c.rank)
    ).all()
    points: dict[str, dict[int, float]] = {}
    sampled = False
    for key, step, value, count in rows:
        sampled = sampled or count > MAX_ROWS_PER_KEY
        if math.isfinite(value):
            points.setdefault(key, {})[float(step)] = value  # a later row at the same step wins
    series = {key: Series(STEP, thin(sorted(by_step.items()))) for key, by_step in points.items() if by_step}
    return series, sampled
