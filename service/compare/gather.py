"""What a comparison holds, for one caller: the jobs named by id (in the order given) or a
search's trials (by trial number), each as an item with its parameters, final metrics and
curves. A job the caller may not see is the 404 an unknown id gets (service/courses/access.py);
an id that is no job may be an MLflow run (service/compare/runs.py), and a job's MLflow run id
names the job."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.compare.flatten import flatten_metrics, flatten_params
from service.compare.items import JOB, CompareItem
from service.compare.runs import find_runs, param_value
from service.compare.series import EVENT_TYPES, job_series
from service.core.errors import NotFound, SpecError
from service.core.orm import Job, JobEvent, TrackingParam, User, could_be_id
from service.courses.access import visible_jobs
from service.jobs import families
from service.tracking.runs import job_id_of, job_run_id

MIN_ITEMS, MAX_ITEMS = 2, 50
MAX_EVENTS = 20_000  # a job's epoch and metrics events read for its curves; past it, a sample


def parse_ids(raw: str) -> list[str]:
    """`ids` as the query gives it: comma-separated, 2 to 50; a repeated id counts once."""
    ids = [part.strip() for part in raw.split(",") if part.strip()]
    if not MIN_ITEMS <= len(ids) <= MAX_ITEMS:
        raise SpecError(
            f"ids must name {MIN_ITEMS} to {MAX_ITEMS} jobs, separated by commas (got {len(ids)}); "
            "for a search's trials give search=<the search's id>",
            field="ids",
        )
    return list(dict.fromkeys(ids))


def by_ids(session: Session, user: User, ids: list[str]) -> list[CompareItem]:
    """The items named by `ids`, in that order (a job named twice, by its id and its MLflow run
    id, is one item); a 404 naming the first id the caller cannot see."""
    job_ids = {i: job_id_of(i) or i for i in ids}  # a job's MLflow run id names the job itself
    possible = [i for i in dict.fromkeys(job_ids.values()) if could_be_id(i)]
    rows = session.execute(
        select(Job, User.name)
        .join(User, User.id == Job.owner_id)
        .where(Job.id.in_(possible), visible_jobs(user.id, user.is_admin))
    ).all()
    jobs = {item.id: item for item in _job_items(session, rows)}
    missing = [i for i in ids if job_ids[i] not in jobs and could_be_id(i)]
    runs = find_runs(session, user, missing) if missing else {}
    found: dict[str, CompareItem] = {}
    for object_id in ids:
        item = jobs.get(job_ids[object_id]) or runs.get(object_id)
        if item is None:
            raise NotFound(f"no job or run with id {object_id!r}", field="id")
        found.setdefault(item.id, item)
    return list(found.values())


def search_trials(session: Session, user: User, search_id: str) -> tuple[list[CompareItem], int]:
    """A search's trials by trial number, and how many were left out: past MAX_ITEMS, the best
    of its leaderboard (once it has one), else the first."""
    visible = visible_jobs(user.id, user.is_admin)
    search = session.scalar(select(Job).where(Job.id == search_id, visible)) if could_be_id(search_id) else None
    if search is None:
        raise NotFound(f"no job with id {search_id!r}", field="id")
    if not _is_search(search):
        raise SpecError(f"job {search_id} is not a search: it has no trials to compare; give ids=", field="search")
    trials = session.execute(
        select(Job.id, Job.trial_number).where(Job.parent_id == search.id, visible).order_by(Job.trial_number)
    ).all()
    chosen = [row.id for row in trials]
    if len(chosen) > MAX_ITEMS:
        present = set(chosen)
        leaderboard = (search.result or {}).get("trials") or []
        ranked = [t.get("id") for t in leaderboard if isinstance(t, dict) and isinstance(t.get("id"), str)]
        best = list(dict.fromkeys(job_id for job_id in ranked if job_id in present))
        chosen = (best + [job_id for job_id in chosen if job_id not in set(best)])[:MAX_ITEMS]
    rows = session.execute(
        select(Job, User.name).join(User, User.id == Job.owner_id).where(Job.id.in_(chosen)).order_by(Job.trial_number)
    ).all()
    return _job_items(session, rows), len(trials) - len(rows)


def _is_search(job: Job) -> bool:
    try:
        return families.get(job.family).wraps
    except LookupError:  # a lab's own family no longer registered
        return False


def _job_items(session: Session, rows: list[Any]) -> list[CompareItem]:
    jobs = [job for job, _owner in rows]
    events, sampled = _events(session, [job.id for job in jobs])
    logged = _logged_params(session, [job.id for job in jobs])
    return [
        CompareItem(
            id=job.id,
            kind=JOB,
            name=job.name,
            status=job.status,
            params=logged.get(job.id, {}) | flatten_params(job.spec),
            metrics=flatten_metrics(job.metrics),
            series=job_series(events.get(job.id, [])),
            family=job.family,
            owner=owner,
            parent_id=job.parent_id,
            trial_number=job.trial_number,
            downsampled=job.id in sampled,
        )
        for job, owner in rows
    ]


def _logged_params(session: Session, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    """What each job's script logged to its own MLflow run (mlflow.log_param), by job; the spec's
    own parameters keep their names over these."""
    runs = {job_run_id(job_id): job_id for job_id in job_ids}
    logged: dict[str, dict[str, Any]] = {}
    for run_id, key, value in session.execute(
        select(TrackingParam.run_id, TrackingParam.key, TrackingParam.value).where(TrackingParam.run_id.in_(runs))
    ):
        logged.setdefault(runs[run_id], {})[key] = param_value(value)
    return logged


def _events(session: Session, job_ids: list[str]) -> tuple[dict[str, list[tuple[str, Any]]], set[str]]:
    """The jobs' epoch and metrics events as (type, data), by job, in order; a job with more than
    MAX_EVENTS is read as every k-th event (its ids in the set returned)."""
    if not job_ids:
        return {}, set()
    curves = JobEvent.type.in_(EVENT_TYPES)
    counts = dict(
        session.execute(
            select(JobEvent.job_id, func.count()).where(JobEvent.job_id.in_(job_ids), curves).group_by(JobEvent.job_id)
        ).all()
    )
    whole = [job_id for job_id, count in counts.items() if count <= MAX_EVENTS]
    events: dict[str, list[tuple[str, Any]]] = {}
    queries = [select(JobEvent.job_id, JobEvent.type, JobEvent.data).where(JobEvent.job_id.in_(whole), curves)]
    sampled = {job_id for job_id in counts if job_id not in whole}
    for job_id in sampled:
        stride = -(-counts[job_id] // MAX_EVENTS)
        queries.append(
            select(JobEvent.job_id, JobEvent.type, JobEvent.data).where(
                JobEvent.job_id == job_id, curves, JobEvent.seq % stride == 0
            )
        )
    for query in queries:
        for job_id, type_, data in session.execute(query.order_by(JobEvent.job_id, JobEvent.seq)):
            events.setdefault(job_id, []).append((type_, data))
    return events, sampled
