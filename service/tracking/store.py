"""Experiments, runs, params, tags and metrics, with MLflow's own validation and limits.

Metrics logged to a job's own run become the job's `metrics` events (one per request and step,
source "mlflow"; one point per key and step in a job, a repeat dropped) and its latest metrics;
every other run's points are rows. The log functions return what a job's run received (its
latest value per key) so the job's socket can hand them to the code trainer."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from mlflow.entities import (
    DatasetInput,
    Experiment,
    ExperimentTag,
    Metric,
    Param,
    Run,
    RunInputs,
    RunOutputs,
    RunTag,
)
from mlflow.entities.logged_model_input import LoggedModelInput
from mlflow.entities.logged_model_output import LoggedModelOutput
from mlflow.exceptions import MlflowException
from mlflow.protos import service_pb2 as pb
from mlflow.utils.name_utils import _generate_random_name
from mlflow.utils.proto_json_utils import parse_dict
from mlflow.utils.validation import (
    _validate_batch_log_data,
    _validate_batch_log_limits,
    _validate_experiment_name,
    _validate_experiment_tag,
    _validate_metric,
    _validate_param,
    _validate_param_keys_unique,
    _validate_tag,
    _validate_tag_name,
)
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.core.config import Settings
from service.core.errors import ServiceError
from service.core.orm import (
    Course,
    Job,
    JobEvent,
    TrackingExperiment,
    TrackingLoggedModel,
    TrackingMetric,
    TrackingParam,
    TrackingRun,
    TrackingRunInput,
    TrackingTag,
    User,
    utcnow,
)
from service.courses.access import staffed_courses, visible_jobs
from service.courses.job_course import member_course
from service.courses.members import courses_of
from service.jobs import lifecycle
from service.tracking.errors import TrackingError, invalid, not_found
from service.tracking.principal import (
    JobPrincipal,
    Principal,
    RunRef,
    owner_id,
    readable_run,
    writable_run,
)
from service.tracking.runs import (
    COURSE_TAG,
    JOBS_EXPERIMENT_ID,
    PARENT_TAG,
    RESERVED_JOB_TAGS,
    RUN_NAME_TAG,
    SHARED_EXPERIMENTS,
    event_points,
    flatten_spec,
    job_as_run,
    millis,
    new_run_id,
    row_as_run,
)

T = TypeVar("T")
ACTIVE, DELETED = "active", "deleted"
FINISHED_STATUSES = {"FINISHED", "FAILED", "KILLED"}
RUN_STATUSES = {"RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"}


def mlflow_checked(check: Callable[[], T]) -> T:
    """Runs one of MLflow's validation functions; its refusal reads as MLflow's server's."""
    try:
        return check()
    except MlflowException as exc:
        raise TrackingError(exc.error_code, exc.message) from exc


def now_ms() -> int:
    return millis(utcnow())


# ---- experiments ---------------------------------------------------------------------------


def ensure_shared_experiments(session: Session) -> None:
    """Default "0" and labtrain-jobs "1": the migration makes them; made again if missing."""
    present = set(session.scalars(select(TrackingExperiment.id).where(TrackingExperiment.id.in_(SHARED_EXPERIMENTS))))
    for experiment_id, name in SHARED_EXPERIMENTS.items():
        if experiment_id not in present:
            try:
                with session.begin_nested():
                    session.add(TrackingExperiment(id=experiment_id, owner_id=None, name=name, tags={}))
            except IntegrityError:  # made by a concurrent request
                pass


def experiment_entity(row: TrackingExperiment) -> Experiment:
    return Experiment(
        experiment_id=str(row.id),
        name=row.name,
        artifact_location=f"mlflow-artifacts:/experiments/{row.id}",
        lifecycle_stage=row.lifecycle_stage,
        tags=[ExperimentTag(k, v) for k, v in (row.tags or {}).items()],
        creation_time=millis(row.created_at),
        last_update_time=millis(row.updated_at),
    )


def _experiment_id(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) < 10:
        return int(value)
    raise not_found(f"No Experiment with id={value} exists")


def staff_experiment_ids(session: Session, user: User):
    """The experiments holding runs a course's staff member sees (their courses' runs and jobs)."""
    course_runs = select(TrackingRun.experiment_id).where(
        or_(
            TrackingRun.course_id.in_(staffed_courses(user.id)),
            TrackingRun.job_id.in_(select(Job.id).where(visible_jobs(user.id, False))),
        )
    )
    return course_runs


def may_read_experiment(session: Session, principal: Principal, row: TrackingExperiment) -> bool:
    if row.owner_id is None or row.owner_id == owner_id(principal):
        return True
    if isinstance(principal, JobPrincipal):
        return False
    user = principal.user
    if user.is_admin:
        return True
    return (
        session.scalar(staff_experiment_ids(session, user).where(TrackingRun.experiment_id == row.id).limit(1))
        is not None
    )


def readable_experiment(session: Session, principal: Principal, experiment_id: Any) -> TrackingExperiment:
    exp_id = _experiment_id(experiment_id)
    if exp_id in SHARED_EXPERIMENTS:
        ensure_shared_experiments(session)
    row = session.get(TrackingExperiment, exp_id)
    if row is None or not may_read_experiment(session, principal, row):
        raise not_found(f"No Experiment with id={experiment_id} exists")
    return row


def own_experiment(session: Session, principal: Principal, experiment_id: Any) -> TrackingExperiment:
    """An experiment the caller may change: their own (the shared ones belong to nobody)."""
    row = readable_experiment(session, principal, experiment_id)
    if row.owner_id != owner_id(principal):
        raise TrackingError("PERMISSION_DENIED", f"Experiment with id={experiment_id} is not yours to change")
    return row


def get_experiment(session: Session, principal: Principal, experiment_id: Any) -> Experiment:
    return experiment_entity(readable_experiment(session, principal, experiment_id))


def experiment_by_name(session: Session, principal: Principal, name: str) -> TrackingExperiment | None:
    """The caller's own experiment by that name, else a shared one."""
    ensure_shared_experiments(session)
    rows = session.scalars(
        select(TrackingExperiment).where(
            TrackingExperiment.name == name,
            or_(TrackingExperiment.owner_id == owner_id(principal), TrackingExperiment.owner_id.is_(None)),
        )
    ).all()
    rows.sort(key=lambda row: row.owner_id is None)
    return rows[0] if rows else None


def get_experiment_by_name(session: Session, principal: Principal, name: str) -> Experiment:
    row = experiment_by_name(session, principal, name)
    if row is None:
        raise not_found(f"Could not find experiment with name '{name}'")
    return experiment_entity(row)


def create_experiment(session: Session, principal: Principal, name: str, tags: list[ExperimentTag]) -> str:
    mlflow_checked(lambda: _validate_experiment_name(name))
    for tag in tags:
        mlflow_checked(lambda tag=tag: _validate_experiment_tag(tag.key, tag.value))
    if experiment_by_name(session, principal, name) is not None:
        raise TrackingError("RESOURCE_ALREADY_EXISTS", f"Experiment(name={name}) already exists.")
    row = TrackingExperiment(owner_id=owner_id(principal), name=name, tags={t.key: t.value for t in tags})
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError as exc:  # the same name made by a concurrent request
        raise TrackingError("RESOURCE_ALREADY_EXISTS", f"Experiment(name={name}) already exists.") from exc
    return str(row.id)


def rename_experiment(session: Session, principal: Principal, experiment_id: Any, new_name: str) -> None:
    row = own_experiment(session, principal, experiment_id)
    mlflow_checked(lambda: _validate_experiment_name(new_name))
    if row.lifecycle_stage != ACTIVE:
        raise invalid("Cannot rename a non-active experiment.")
    other = experiment_by_name(session, principal, new_name)
    if other is not None and other.id != row.id:
        raise TrackingError("RESOURCE_ALREADY_EXISTS", f"Experiment(name={new_name}) already exists.")
    row.name, row.updated_at = new_name, utcnow()


def set_experiment_lifecycle(session: Session, principal: Principal, experiment_id: Any, stage: str) -> None:
    row = own_experiment(session, principal, experiment_id)
    row.lifecycle_stage, row.updated_at = stage, utcnow()


def set_experiment_tag(session: Session, principal: Principal, experiment_id: Any, key: str, value: str) -> None:
    mlflow_checked(lambda: _validate_experiment_tag(key, value))
    row = own_experiment(session, principal, experiment_id)
    row.tags, row.updated_at = {**(row.tags or {}), key: value}, utcnow()


def delete_experiment_tag(session: Session, principal: Principal, experiment_id: Any, key: str) -> None:
    row = own_experiment(session, principal, experiment_id)
    if key not in (row.tags or {}):
        raise not_found(f"No tag with name: {key} in experiment with id {experiment_id}")
    row.tags = {k: v for k, v in row.tags.items() if k != key}


def visible_experiments(session: Session, principal: Principal) -> list[TrackingExperiment]:
    """Every experiment the caller may read: their own, the shared two, those holding runs
    they see as a course's staff (an admin: all)."""
    ensure_shared_experiments(session)
    query = select(TrackingExperiment)
    if isinstance(principal, JobPrincipal):
        query = query.where(
            or_(TrackingExperiment.owner_id == principal.owner_id, TrackingExperiment.owner_id.is_(None))
        )
    elif not principal.user.is_admin:
        user = principal.user
        query = query.where(
            or_(
                TrackingExperiment.owner_id == user.id,
                TrackingExperiment.owner_id.is_(None),
                TrackingExperiment.id.in_(staff_experiment_ids(session, user)),
            )
        )
    return list(session.scalars(query.order_by(TrackingExperiment.id)))


# ---- runs ----------------------------------------------------------------------------------


def _run_course(session: Session, principal: Principal, tags: dict[str, str]) -> str | None:
    """The course a run that is not a job is for: the job's (a job's run's child), the course a
    `labtrain.course` tag names, else the caller's only course."""
    if isinstance(principal, JobPrincipal):
        job = session.get(Job, principal.job_id)
        return job.course_id if job is not None else None
    user = principal.user
    if COURSE_TAG in tags:
        try:
            return member_course(session, user, tags[COURSE_TAG]).id
        except ServiceError as exc:
            raise invalid(f"tag {COURSE_TAG}: {exc.message}") from exc
    courses = [course for course, _roles in courses_of(session, user)]
    return courses[0].id if len(courses) == 1 else None


def create_run(
    session: Session,
    principal: Principal,
    experiment_id: str,
    start_time: int | None,
    tags: list[RunTag],
    run_name: str | None,
) -> Run:
    for index, tag in enumerate(tags):
        mlflow_checked(lambda tag=tag, index=index: _validate_tag(tag.key, tag.value, path=f"tags[{index}]"))
    experiment = readable_experiment(session, principal, experiment_id or "0")
    if experiment.owner_id not in (None, owner_id(principal)):
        raise TrackingError("PERMISSION_DENIED", f"Experiment with id={experiment_id} is not yours to change")
    if experiment.lifecycle_stage != ACTIVE:
        raise invalid(f"Could not create run under non-active experiment with id {experiment.id}.")
    tag_values = {tag.key: tag.value for tag in tags}
    name = run_name or tag_values.pop(RUN_NAME_TAG, None) or _generate_random_name()
    tag_values.pop(RUN_NAME_TAG, None)
    if PARENT_TAG in tag_values:
        # A child names a parent the caller may write to (its own run, or a job's its own).
        writable_run(session, principal, tag_values[PARENT_TAG])
    row = TrackingRun(
        id=new_run_id(),
        experiment_id=experiment.id,
        owner_id=owner_id(principal),
        created_by_job_id=principal.job_id if isinstance(principal, JobPrincipal) else None,
        course_id=_run_course(session, principal, tag_values),
        name=name,
        status="RUNNING",
        start_time=start_time or now_ms(),
        lifecycle_stage=ACTIVE,
        points=0,
    )
    session.add(row)
    session.flush()
    session.add_all(TrackingTag(run_id=row.id, key=k, value=v) for k, v in tag_values.items())
    session.flush()
    return run_entity(session, RunRef(row.id, row.owner_id, None, row))


def job_row(session: Session, ref: RunRef) -> TrackingRun:
    """A job's run's own row, made on its first write."""
    if ref.row is not None:
        return ref.row
    job = ref.job
    try:
        with session.begin_nested():
            row = TrackingRun(
                id=ref.run_id,
                experiment_id=JOBS_EXPERIMENT_ID,
                owner_id=job.owner_id,
                job_id=job.id,
                course_id=job.course_id,
                status="RUNNING",
                start_time=millis(job.created_at) or now_ms(),
                lifecycle_stage=ACTIVE,
                points=0,
            )
            ensure_shared_experiments(session)
            session.add(row)
    except IntegrityError:  # made by a concurrent request
        row = session.scalars(select(TrackingRun).where(TrackingRun.job_id == job.id)).one()
    ref.row = row
    return row


def run_entity(session: Session, ref: RunRef) -> Run:
    return load_runs(session, [ref])[0]


def get_run(session: Session, principal: Principal, run_id: str) -> Run:
    return run_entity(session, readable_run(session, principal, run_id))


def _active_run(session: Session, principal: Principal, run_id: str) -> RunRef:
    ref = writable_run(session, principal, run_id)
    if ref.row is not None and ref.row.lifecycle_stage != ACTIVE:
        raise invalid(f"The run {run_id} must be in the 'active' state. Current state is {ref.row.lifecycle_stage}.")
    return ref


def update_run(
    session: Session,
    principal: Principal,
    run_id: str,
    status: str | None,
    end_time: int | None,
    run_name: str | None,
) -> Run:
    """A job's status and times are the job's own: for a job's run only the name changes."""
    ref = _active_run(session, principal, run_id)
    if status is not None and status not in RUN_STATUSES:
        raise invalid(f"Invalid run status: {status}")
    if ref.job is not None:
        if run_name:
            _set_tags(session, job_row(session, ref), {RUN_NAME_TAG: run_name})
    else:
        row = ref.row
        if status is not None:
            row.status = status
        if end_time is not None:
            row.end_time = end_time
        elif status in FINISHED_STATUSES and row.end_time is None:
            row.end_time = now_ms()
        if run_name:
            row.name = run_name
    session.flush()
    return run_entity(session, ref)


def set_run_lifecycle(session: Session, principal: Principal, run_id: str, stage: str) -> None:
    ref = writable_run(session, principal, run_id)
    row = job_row(session, ref) if ref.job is not None else ref.row
    row.lifecycle_stage = stage


# ---- params, tags, metrics -----------------------------------------------------------------


def log_batch(
    session: Session,
    settings: Settings,
    principal: Principal,
    run_id: str,
    metrics: list[Metric],
    params: list[Param],
    tags: list[RunTag],
) -> dict[str, float]:
    """MLflow's log-batch: limits, then every item checked before anything is written."""
    mlflow_checked(lambda: _validate_batch_log_limits(metrics, params, tags))
    metrics, params, tags = mlflow_checked(lambda: _validate_batch_log_data(metrics, params, tags))
    mlflow_checked(lambda: _validate_param_keys_unique(params))
    ref = _active_run(session, principal, run_id)
    if params:
        _log_params(session, ref, params)
    if tags:
        row = job_row(session, ref) if ref.job is not None else ref.row
        values = {tag.key: tag.value for tag in tags}
        if ref.job is not None:  # which job it is stays labtrain's to say
            values = {k: v for k, v in values.items() if k not in RESERVED_JOB_TAGS}
        elif RUN_NAME_TAG in values:
            row.name = values.pop(RUN_NAME_TAG)
        _set_tags(session, row, values)
    received = _log_metrics(session, settings, ref, metrics) if metrics else {}
    session.flush()
    return received


def log_metric(
    session: Session, settings: Settings, principal: Principal, run_id: str, metric: Metric
) -> dict[str, float]:
    mlflow_checked(lambda: _validate_metric(metric.key, metric.value, metric.timestamp, metric.step))
    return log_batch(session, settings, principal, run_id, [metric], [], [])


def log_param(session: Session, settings: Settings, principal: Principal, run_id: str, key: str, value: str) -> None:
    param = mlflow_checked(lambda: _validate_param(key, value))
    log_batch(session, settings, principal, run_id, [], [param], [])


def set_tag(session: Session, settings: Settings, principal: Principal, run_id: str, key: str, value: str) -> None:
    log_batch(session, settings, principal, run_id, [], [], [RunTag(key, value)])


def delete_tag(session: Session, principal: Principal, run_id: str, key: str) -> None:
    mlflow_checked(lambda: _validate_tag_name(key))
    ref = _active_run(session, principal, run_id)
    tag = session.get(TrackingTag, (run_id, key)) if ref.row is not None else None
    if tag is None:
        raise not_found(f"No tag with name: {key} in run with id {run_id}")
    session.delete(tag)
    session.flush()


def _log_params(session: Session, ref: RunRef, params: list[Param]) -> None:
    row = job_row(session, ref) if ref.job is not None else ref.row
    existing = {
        p.key: p.value
        for p in session.scalars(
            select(TrackingParam).where(TrackingParam.run_id == row.id, TrackingParam.key.in_([p.key for p in params]))
        )
    }
    if ref.job is not None:  # the job's spec is its first params
        spec = flatten_spec(ref.job.spec)
        existing = {**{p.key: spec[p.key] for p in params if p.key in spec}, **existing}
    changed = [p for p in params if p.key in existing and existing[p.key] != p.value]
    if changed:
        param = changed[0]
        raise invalid(
            f"Changing param values is not allowed. Param with key='{param.key}' was already logged "
            f"with value='{existing[param.key]}' for run ID='{ref.run_id}'. Attempted logging new value "
            f"'{param.value}'."
        )
    session.add_all(TrackingParam(run_id=row.id, key=p.key, value=p.value) for p in params if p.key not in existing)
    session.flush()


def _set_tags(session: Session, row: TrackingRun, values: dict[str, str]) -> None:
    for key, value in values.items():
        tag = session.get(TrackingTag, (row.id, key))
        if tag is None:
            session.add(TrackingTag(run_id=row.id, key=key, value=value))
        else:
            tag.value = value
    session.flush()


def _take_points(session: Session, settings: Settings, row: TrackingRun, count: int) -> None:
    """Counts the points against the run's cap in one guarded UPDATE."""
    taken = session.execute(
        update(TrackingRun)
        .where(TrackingRun.id == row.id, TrackingRun.points + count <= settings.tracking_max_points)
        .values(points=TrackingRun.points + count)
        .returning(TrackingRun.points)
    ).first()
    if taken is None:
        raise TrackingError(
            "RESOURCE_LIMIT_EXCEEDED",
            f"run {row.id} holds at most {settings.tracking_max_points} metric points "
            "(LABTRAIN_TRACKING_MAX_POINTS); log fewer steps or fewer keys",
            status=400,
        )


def _log_metrics(session: Session, settings: Settings, ref: RunRef, metrics: list[Metric]) -> dict[str, float]:
    if ref.job is None:
        metrics = _without_repeats(session, ref.row.id, metrics)
        if not metrics:
            return {}
        _take_points(session, settings, ref.row, len(metrics))
        session.add_all(
            TrackingMetric(run_id=ref.row.id, key=m.key, value=float(m.value), timestamp=m.timestamp, step=m.step)
            for m in metrics
        )
        return {}
    return _log_job_metrics(session, settings, ref, metrics)


def _without_repeats(session: Session, run_id: str, metrics: list[Metric]) -> list[Metric]:
    """MLflow's client logs a run's points again with a model's id (log_model): a point the run
    already holds (same key, step, time and value) is not stored twice, as MLflow's own store."""
    relogged = [m for m in metrics if m.model_id]
    if not relogged:
        return metrics
    held = set(
        session.execute(
            select(TrackingMetric.key, TrackingMetric.step, TrackingMetric.timestamp, TrackingMetric.value).where(
                TrackingMetric.run_id == run_id,
                TrackingMetric.key.in_({m.key for m in relogged}),
                TrackingMetric.step.in_({int(m.step) for m in relogged}),
            )
        )
    )
    kept = []
    for metric in metrics:
        point = (metric.key, int(metric.step), int(metric.timestamp), float(metric.value))
        if metric.model_id and point in held:
            continue
        held.add(point)
        kept.append(metric)
    return kept


def _log_job_metrics(session: Session, settings: Settings, ref: RunRef, metrics: list[Metric]) -> dict[str, float]:
    """A job's points as its `metrics` events: one event per step, a (key, step) the job already
    has dropped, a value that is not finite left out (its curves cannot draw it)."""
    job = ref.job
    steps = sorted({int(m.step) for m in metrics})
    seen: set[tuple[str, int]] = set()
    for data in session.scalars(
        select(JobEvent.data).where(
            JobEvent.job_id == job.id, JobEvent.type == "metrics", JobEvent.data["step"].as_integer().in_(steps)
        )
    ):
        seen.update((key, data.get("step")) for key in data if key not in lifecycle.METRICS_EVENT_FIELDS)
    by_step: dict[int, dict[str, float]] = defaultdict(dict)
    latest: dict[str, tuple[int, float]] = {}
    for metric in metrics:
        step, value = int(metric.step), float(metric.value)
        if not math.isfinite(value) or (metric.key, step) in seen:
            continue
        seen.add((metric.key, step))
        by_step[step][metric.key] = value
        if metric.key not in latest or step >= latest[metric.key][0]:
            latest[metric.key] = (step, value)
    count = sum(len(values) for values in by_step.values())
    if not count:
        return {}
    _take_points(session, settings, job_row(session, ref), count)
    at = utcnow()
    lifecycle.add_events(
        session,
        job.id,
        [("metrics", {"step": step, "source": "mlflow", **by_step[step]}, at) for step in sorted(by_step)],
    )
    received = {key: value for key, (_step, value) in latest.items()}
    job.metrics = {**(job.metrics or {}), **received}
    return received


def metric_history(session: Session, principal: Principal, run_id: str, key: str) -> list[Metric]:
    """Every point of one key, by step then time: a job's from its epoch and metrics events."""
    ref = readable_run(session, principal, run_id)
    if ref.job is None:
        rows = session.scalars(
            select(TrackingMetric)
            .where(TrackingMetric.run_id == run_id, TrackingMetric.key == key)
            .order_by(TrackingMetric.step, TrackingMetric.timestamp, TrackingMetric.id)
        )
        return [Metric(r.key, r.value, r.timestamp, r.step) for r in rows]
    events = session.scalars(
        select(JobEvent)
        .where(JobEvent.job_id == ref.job.id, JobEvent.type.in_(("epoch", "metrics")))
        .order_by(JobEvent.seq)
    )
    points = [Metric(k, value, at, step) for event in events for k, value, at, step in event_points(event) if k == key]
    return sorted(points, key=lambda m: (m.step, m.timestamp))


# ---- building runs in bulk -----------------------------------------------------------------


def load_runs(session: Session, refs: list[RunRef]) -> list[Run]:
    """Runs as mlflow.entities, with a few queries however many there are."""
    row_ids = [ref.row.id for ref in refs if ref.row is not None]
    params = _by_run(session, TrackingParam, row_ids)
    tags = _by_run(session, TrackingTag, row_ids)
    latest = _latest_metrics(session, [ref.row.id for ref in refs if ref.job is None])
    owners = _names(session, User, {ref.owner_id for ref in refs})
    courses = _names(session, Course, {ref.job.course_id for ref in refs if ref.job is not None and ref.job.course_id})
    io = _run_io(session, row_ids)
    runs = []
    for ref in refs:
        if ref.job is not None:
            job = ref.job
            runs.append(
                job_as_run(
                    job,
                    ref.row,
                    owners.get(job.owner_id, ""),
                    courses.get(job.course_id),
                    params.get(ref.run_id, {}),
                    tags.get(ref.run_id, {}),
                )
            )
        else:
            runs.append(
                row_as_run(
                    ref.row,
                    owners.get(ref.owner_id, ""),
                    params.get(ref.run_id, {}),
                    tags.get(ref.run_id, {}),
                    latest.get(ref.run_id, []),
                )
            )
        if ref.run_id in io:  # the data sets and models it logged as inputs, its models as outputs
            inputs, outputs = io[ref.run_id]
            runs[-1] = Run(runs[-1].info, runs[-1].data, inputs, outputs)
    return runs


def _run_io(session: Session, run_ids: list[str]) -> dict[str, tuple[RunInputs, RunOutputs]]:
    """What each run (by its row's id) keeps of its inputs and outputs."""
    if not run_ids:
        return {}
    datasets: dict[str, list[DatasetInput]] = {}
    model_inputs: dict[str, list[LoggedModelInput]] = {}
    for item in session.scalars(
        select(TrackingRunInput).where(TrackingRunInput.run_id.in_(run_ids)).order_by(TrackingRunInput.id)
    ):
        if item.kind == "dataset":
            datasets.setdefault(item.run_id, []).append(_dataset_input(item.data))
        else:
            model_inputs.setdefault(item.run_id, []).append(LoggedModelInput(model_id=item.data["model_id"]))
    outputs: dict[str, list[LoggedModelOutput]] = {}
    for model_id, run_id, step in session.execute(
        select(TrackingLoggedModel.id, TrackingLoggedModel.run_id, TrackingLoggedModel.output_step).where(
            TrackingLoggedModel.run_id.in_(run_ids),
            TrackingLoggedModel.output_step.is_not(None),
            TrackingLoggedModel.lifecycle_stage == ACTIVE,
        )
    ):
        outputs.setdefault(run_id, []).append(LoggedModelOutput(model_id=model_id, step=step))
    return {
        run_id: (
            RunInputs(dataset_inputs=datasets.get(run_id, []), model_inputs=model_inputs.get(run_id, [])),
            RunOutputs(model_outputs=outputs.get(run_id, [])),
        )
        for run_id in run_ids
        if run_id in datasets or run_id in model_inputs or run_id in outputs
    }


def _dataset_input(data: dict[str, Any]) -> DatasetInput:
    message = pb.DatasetInput()
    parse_dict(data, message)
    return DatasetInput.from_proto(message)


def _by_run(session: Session, table, run_ids: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for chunk in _chunks(run_ids):
        for item in session.scalars(select(table).where(table.run_id.in_(chunk))):
            out[item.run_id][item.key] = item.value
    return out


def _latest_metrics(session: Session, run_ids: list[str]) -> dict[str, list[Metric]]:
    """MLflow's latest value of each key: the largest step, then the latest time, then the largest value."""
    out: dict[str, list[Metric]] = defaultdict(list)
    for chunk in _chunks(run_ids):
        rank = (
            func.row_number()
            .over(
                partition_by=(TrackingMetric.run_id, TrackingMetric.key),
                order_by=(TrackingMetric.step.desc(), TrackingMetric.timestamp.desc(), TrackingMetric.value.desc()),
            )
            .label("rank")
        )
        ranked = select(TrackingMetric, rank).where(TrackingMetric.run_id.in_(chunk)).subquery()
        rows = session.execute(
            select(ranked.c.run_id, ranked.c.key, ranked.c.value, ranked.c.timestamp, ranked.c.step).where(
                ranked.c.rank == 1
            )
        )
        for run_id, key, value, timestamp, step in rows:
            out[run_id].append(Metric(key, value, timestamp, step))
    return out


def _names(session: Session, table, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    return dict(session.execute(select(table.id, table.name).where(table.id.in_(ids))).all())


def _chunks(items: list[T], size: int = 500) -> Iterable[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
