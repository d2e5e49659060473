"""runs/search and experiments/search with MLflow's own filter grammar, order_by and page
tokens (mlflow.utils.search_utils), over what the caller may see: the jobs and runs in the
asked experiments that they may read, the experiments they may read."""

from __future__ import annotations

from typing import Any

from mlflow.entities import Experiment, Run, ViewType
from mlflow.utils.search_utils import SearchExperimentsUtils, SearchUtils
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from service.core.orm import Job, TrackingRun
from service.courses.access import visible_jobs
from service.tracking.errors import TrackingError, invalid
from service.tracking.principal import JobPrincipal, Principal, RunRef, runs_seen
from service.tracking.runs import JOBS_EXPERIMENT_ID, job_run_id
from service.tracking.store import (
    ACTIVE,
    DELETED,
    experiment_entity,
    load_runs,
    mlflow_checked,
    readable_experiment,
    visible_experiments,
)

MAX_RESULTS = 50_000  # MLflow's own bound on one page
STAGES = {ViewType.ACTIVE_ONLY: (ACTIVE,), ViewType.DELETED_ONLY: (DELETED,), ViewType.ALL: (ACTIVE, DELETED)}


def _page_size(max_results: Any, default: int) -> int:
    if max_results is None:
        return default
    if not isinstance(max_results, int) or max_results <= 0 or max_results > MAX_RESULTS:
        raise invalid(
            f"Invalid value {max_results} for parameter 'max_results' supplied. It must be a positive "
            f"integer at most {MAX_RESULTS}"
        )
    return max_results


def _stages(view_type: Any) -> tuple[str, ...]:
    if view_type in (None, 0):
        return STAGES[ViewType.ACTIVE_ONLY]
    if view_type not in STAGES:
        raise invalid(f"Invalid view_type {view_type!r}: 1 (active only), 2 (deleted only) or 3 (all)")
    return STAGES[view_type]


def search_runs(
    session: Session,
    principal: Principal,
    experiment_ids: list[str],
    filter_string: str | None,
    view_type: Any,
    max_results: Any,
    order_by: list[str],
    page_token: str | None,
) -> tuple[list[Run], str | None]:
    size = _page_size(max_results, 1000)
    stages = _stages(view_type)
    # Parse first, so a bad filter is MLflow's error even when nothing would match it.
    mlflow_checked(lambda: SearchUtils.parse_search_filter(filter_string))
    for clause in order_by:
        mlflow_checked(lambda clause=clause: SearchUtils.parse_order_by_for_search_runs(clause))
    experiments = []
    for experiment_id in experiment_ids:
        try:
            experiments.append(readable_experiment(session, principal, experiment_id).id)
        except TrackingError:  # an experiment the caller cannot read holds nothing for them
            continue
    refs = _visible_refs(session, principal, experiments, stages) if experiments else []
    runs = load_runs(session, refs)
    runs = mlflow_checked(lambda: SearchUtils.filter(runs, filter_string))
    runs = mlflow_checked(lambda: SearchUtils.sort(runs, order_by))
    page, token = mlflow_checked(lambda: SearchUtils.paginate(runs, page_token, size))
    return page, token.decode() if isinstance(token, bytes) else token


def _visible_refs(
    session: Session, principal: Principal, experiments: list[int], stages: tuple[str, ...]
) -> list[RunRef]:
    jobs_in = func.coalesce(TrackingRun.experiment_id, JOBS_EXPERIMENT_ID).in_(experiments)
    stage = func.coalesce(TrackingRun.lifecycle_stage, ACTIVE).in_(stages)
    jobs = session.execute(
        select(Job, TrackingRun)
        .outerjoin(TrackingRun, TrackingRun.job_id == Job.id)
        .where(_jobs_seen(principal), jobs_in, stage)
        .order_by(Job.created_at.desc())
    ).all()
    rows = session.scalars(
        select(TrackingRun).where(
            TrackingRun.job_id.is_(None),
            TrackingRun.experiment_id.in_(experiments),
            TrackingRun.lifecycle_stage.in_(stages),
            runs_seen(principal),
        )
    ).all()
    refs = [RunRef(job_run_id(job.id), job.owner_id, job, row) for job, row in jobs]
    return refs + [RunRef(row.id, row.owner_id, None, row) for row in rows]


def _jobs_seen(principal: Principal) -> ColumnElement[bool]:
    if isinstance(principal, JobPrincipal):
        return Job.id == principal.job_id
    return visible_jobs(principal.user.id, principal.user.is_admin)


def search_experiments(
    session: Session,
    principal: Principal,
    view_type: Any,
    max_results: Any,
    order_by: list[str],
    filter_string: str | None,
    page_token: str | None,
) -> tuple[list[Experiment], str | None]:
    size = _page_size(max_results, 1000)
    stages = _stages(view_type)
    experiments = [
        experiment_entity(row) for row in visible_experiments(session, principal) if row.lifecycle_stage in stages
    ]
    experiments = mlflow_checked(lambda: SearchExperimentsUtils.filter(experiments, filter_string))
    experiments = mlflow_checked(
        lambda: SearchExperimentsUtils.sort(experiments, order_by or ["creation_time DESC", "experiment_id ASC"])
    )
    page, token = mlflow_checked(lambda: SearchUtils.paginate(experiments, page_token, size))
    return page, token.decode() if isinstance(token, bytes) else token
