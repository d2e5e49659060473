"""MLflow 3's logged models, and what a run keeps of its inputs (LogInputs) and outputs (LogOutputs).

A logged model belongs to the run it was logged from (its source run) and to that run's owner:
whoever may read or change that run may read or change the model (service/tracking/principal.py),
anyone else gets the missing model's 404. A job's model without a source run is its own run's; a
laptop's without one is its owner's alone. The model's files are kept with its run's artifacts
(service/tracking/artifacts.py); labtrain never loads them. Each model keeps its params and tags,
and of the metrics logged to it the latest point per key and data set (a value that is not
finite is left out, as a job's curves leave it out)."""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

from mlflow.entities import DatasetInput, LoggedModel, LoggedModelStatus, Metric
from mlflow.entities.logged_model_input import LoggedModelInput
from mlflow.entities.logged_model_output import LoggedModelOutput
from mlflow.utils.name_utils import _generate_random_name
from mlflow.utils.proto_json_utils import message_to_json
from mlflow.utils.search_utils import SearchLoggedModelsUtils
from mlflow.utils.validation import (
    _validate_dataset_inputs,
    _validate_logged_model_name,
    _validate_param,
    _validate_tag,
)
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.core.orm import Job, TrackingLoggedModel, TrackingRun, TrackingRunInput
from service.courses.access import staffed_courses, visible_jobs
from service.tracking.errors import TrackingError, invalid, not_found
from service.tracking.principal import (
    JobPrincipal,
    Principal,
    RunRef,
    find_run,
    may_read,
    may_write,
    owner_id,
    writable_run,
)
from service.tracking.runs import job_run_id
from service.tracking.store import ACTIVE, DELETED, job_row, mlflow_checked, now_ms, readable_experiment

MODELS_FOLDER = "models"  # as MLflow's server: mlflow-artifacts:/<experiment>/models/<model_id>/artifacts
MAX_NAME_LENGTH = 500
MAX_PARAMS = 2000  # a model's params (MLflow's client sends a run's params with it, 100 a request)
MAX_TAGS = 200
MAX_METRICS = 1000  # distinct (key, data set) points a model keeps
MAX_RUN_INPUTS = 200  # data sets and models one run keeps as inputs
MAX_INPUT_BYTES = 1024 * 1024  # one data set input as JSON (MLflow's profile may be 16 MB; kept smaller here)
MAX_RESULTS = 50_000
DEFAULT_RESULTS = 100  # MLflow's SEARCH_LOGGED_MODEL_MAX_RESULTS_DEFAULT


def artifact_location(experiment_id: int | str, model_id: str) -> str:
    return f"mlflow-artifacts:/{experiment_id}/{MODELS_FOLDER}/{model_id}/artifacts"


def missing_model(model_id: str) -> TrackingError:
    return not_found(f"Logged model with ID '{model_id}' not found.")


def entity(row: TrackingLoggedModel) -> LoggedModel:
    return LoggedModel(
        experiment_id=str(row.experiment_id),
        model_id=row.id,
        name=row.name,
        artifact_location=artifact_location(row.experiment_id, row.id),
        creation_timestamp=row.creation_time,
        last_updated_timestamp=row.last_updated_time,
        model_type=row.model_type,
        source_run_id=row.run_id,
        status=LoggedModelStatus(row.status),
        status_message=row.status_message,
        tags=dict(row.tags or {}),
        params=dict(row.params or {}),
        metrics=[Metric(**point) for point in row.metrics or []],
    )


# ---- who may see or change a model ---------------------------------------------------------


def model_run(session: Session, row: TrackingLoggedModel) -> RunRef | None:
    """The model's source run (None for a model logged without one)."""
    return find_run(session, row.run_id) if row.run_id is not None else None


def _may_read(session: Session, principal: Principal, row: TrackingLoggedModel, ref: RunRef | None) -> bool:
    if row.run_id is not None:
        return ref is not None and may_read(session, principal, ref)
    if isinstance(principal, JobPrincipal):
        return False
    return principal.user.is_admin or row.owner_id == principal.user.id


def readable_model(
    session: Session, principal: Principal, model_id: str, allow_deleted: bool = False
) -> tuple[TrackingLoggedModel, RunRef | None]:
    row = session.get(TrackingLoggedModel, model_id) if isinstance(model_id, str) and model_id else None
    if row is None or (row.lifecycle_stage == DELETED and not allow_deleted):
        raise missing_model(model_id)
    ref = model_run(session, row)
    if not _may_read(session, principal, row, ref):
        raise missing_model(model_id)
    return row, ref


def writable_model(
    session: Session, principal: Principal, model_id: str, allow_deleted: bool = False
) -> tuple[TrackingLoggedModel, RunRef | None]:
    """A model the caller may change; one they may only read answers PERMISSION_DENIED."""
    row, ref = readable_model(session, principal, model_id, allow_deleted)
    allowed = may_write(principal, ref) if ref is not None else row.owner_id == owner_id(principal)
    if not allowed or (ref is None and isinstance(principal, JobPrincipal)):
        raise TrackingError("PERMISSION_DENIED", f"Logged model with ID '{model_id}' is not yours to change")
    return row, ref


# ---- the model itself ----------------------------------------------------------------------


def _checked_params(params: dict[str, str]) -> dict[str, str]:
    """MLflow's checks of a param; a value past its length is cut to it, as MLflow's client does."""
    checked = {}
    for key, value in params.items():
        param = mlflow_checked(lambda key=key, value=value: _validate_param(key, value))
        checked[param.key] = param.value
    return checked


def _checked_tags(tags: dict[str, str]) -> dict[str, str]:
    for key, value in tags.items():
        mlflow_checked(lambda key=key, value=value: _validate_tag(key, value))
    return tags


def _bounded(row: TrackingLoggedModel, params: dict[str, str], tags: dict[str, str]) -> None:
    if len(params) > MAX_PARAMS:
        raise TrackingError(
            "RESOURCE_LIMIT_EXCEEDED",
            f"a logged model keeps at most {MAX_PARAMS} params; model {row.id} would have more",
        )
    if len(tags) > MAX_TAGS:
        raise TrackingError(
            "RESOURCE_LIMIT_EXCEEDED", f"a logged model keeps at most {MAX_TAGS} tags; model {row.id} would have more"
        )


def create_model(
    session: Session,
    principal: Principal,
    experiment_id: str,
    name: str | None,
    model_type: str | None,
    source_run_id: str | None,
    params: dict[str, str],
    tags: dict[str, str],
) -> LoggedModel:
    mlflow_checked(lambda: _validate_logged_model_name(name))
    if name is not None and len(name) > MAX_NAME_LENGTH:
        raise invalid(f"Invalid model name: at most {MAX_NAME_LENGTH} characters")
    params = _checked_params(params)
    _checked_tags(tags)
    if isinstance(principal, JobPrincipal) and not source_run_id:
        source_run_id = job_run_id(principal.job_id)  # a job's model is its run's
    experiment = readable_experiment(session, principal, experiment_id)
    if experiment.lifecycle_stage != ACTIVE:
        raise invalid(f"Could not create a logged model in non-active experiment with id {experiment.id}.")
    run_row, owner = None, owner_id(principal)
    if source_run_id:
        ref = writable_run(session, principal, source_run_id)  # a job: only its own runs
        run_row = job_row(session, ref) if ref.job is not None else ref.row
        owner = ref.owner_id
    if experiment.owner_id not in (None, owner):  # as for a run: a shared experiment or the owner's own
        raise TrackingError("PERMISSION_DENIED", f"Experiment with id={experiment_id} is not yours to change")
    now = now_ms()
    row = TrackingLoggedModel(
        id=f"m-{uuid.uuid4().hex}",
        experiment_id=experiment.id,
        owner_id=owner,
        run_id=run_row.id if run_row is not None else None,
        name=name or _generate_random_name(),
        model_type=model_type or None,
        status=LoggedModelStatus.PENDING.value,
        lifecycle_stage=ACTIVE,
        params=params,
        tags=tags,
        metrics=[],
        creation_time=now,
        last_updated_time=now,
    )
    _bounded(row, params, tags)
    session.add(row)
    session.flush()
    return entity(row)


def get_model(session: Session, principal: Principal, model_id: str, allow_deleted: bool) -> LoggedModel:
    return entity(readable_model(session, principal, model_id, allow_deleted)[0])


def log_params(session: Session, principal: Principal, model_id: str, params: dict[str, str]) -> None:
    params = _checked_params(params)
    row, _ = writable_model(session, principal, model_id)
    existing = dict(row.params or {})
    changed = [key for key, value in params.items() if key in existing and existing[key] != value]
    if changed:
        key = changed[0]
        raise invalid(
            f"Changing param values is not allowed. Param with key='{key}' was already logged with "
            f"value='{existing[key]}' for logged model ID='{model_id}'. Attempted logging new value '{params[key]}'."
        )
    merged = {**existing, **params}
    _bounded(row, merged, row.tags or {})
    row.params, row.last_updated_time = merged, now_ms()


def finalize(session: Session, principal: Principal, model_id: str, status: int) -> LoggedModel:
    try:
        final = LoggedModelStatus.from_int(status)
    except Exception:
        final = None
    if final in (None, LoggedModelStatus.UNSPECIFIED):
        raise invalid(f"Invalid value {status} for parameter 'status': 1 (PENDING), 2 (READY) or 3 (FAILED)")
    row, _ = writable_model(session, principal, model_id)
    row.status, row.last_updated_time = final.value, now_ms()
    session.flush()
    return entity(row)


def delete_model(session: Session, principal: Principal, model_id: str) -> None:
    """MLflow's soft deletion: the model is gone from reads and searches; its files stay with its
    run's artifacts (the run's owner deletes them there, or through the model's artifact path)."""
    row, _ = writable_model(session, principal, model_id)
    row.lifecycle_stage, row.last_updated_time = DELETED, now_ms()


def set_tags(session: Session, principal: Principal, model_id: str, tags: dict[str, str]) -> None:
    _checked_tags(tags)
    row, _ = writable_model(session, principal, model_id)
    merged = {**(row.tags or {}), **tags}
    _bounded(row, row.params or {}, merged)
    row.tags, row.last_updated_time = merged, now_ms()


def delete_tag(session: Session, principal: Principal, model_id: str, key: str) -> None:
    row, _ = writable_model(session, principal, model_id)
    if key not in (row.tags or {}):
        raise not_found(f"No tag with key {key!r} found for model with ID {model_id!r}.")
    row.tags = {k: v for k, v in row.tags.items() if k != key}
    row.last_updated_time = now_ms()


def record_metrics(session: Session, principal: Principal, run_id: str, metrics: list[Metric]) -> None:
    """Metrics logged with a model_id (log-batch, log-metric) kept on that model too: the latest
    point per key and data set."""
    by_model: dict[str, list[Metric]] = {}
    for metric in metrics:
        if metric.model_id:
            by_model.setdefault(metric.model_id, []).append(metric)
    for model_id, points in by_model.items():
        row, _ = writable_model(session, principal, model_id)
        kept = {(p["key"], p.get("dataset_name"), p.get("dataset_digest")): p for p in row.metrics or []}
        for metric in points:
            value = float(metric.value)
            if not math.isfinite(value):
                continue
            group = (metric.key, metric.dataset_name, metric.dataset_digest)
            point = {
                "key": metric.key,
                "value": value,
                "timestamp": int(metric.timestamp),
                "step": int(metric.step),
                "dataset_name": metric.dataset_name,
                "dataset_digest": metric.dataset_digest,
                "model_id": model_id,
                "run_id": run_id,
            }
            old = kept.get(group)
            if old is None or (point["step"], point["timestamp"]) >= (old["step"], old["timestamp"]):
                kept[group] = point
        if len(kept) > MAX_METRICS:
            raise TrackingError(
                "RESOURCE_LIMIT_EXCEEDED",
                f"a logged model keeps at most {MAX_METRICS} metric keys; model {model_id} would have more",
            )
        row.metrics, row.last_updated_time = list(kept.values()), now_ms()


# ---- search --------------------------------------------------------------------------------


def _seen(principal: Principal) -> ColumnElement[bool]:
    """The models a caller may read, as a condition on TrackingLoggedModel joined to its run."""
    if isinstance(principal, JobPrincipal):
        return or_(
            TrackingLoggedModel.run_id == job_run_id(principal.job_id),
            TrackingRun.created_by_job_id == principal.job_id,
        )
    user = principal.user
    if user.is_admin:
        return TrackingLoggedModel.id.is_not(None)
    seen_jobs = select(Job.id).where(visible_jobs(user.id, False))
    return or_(
        TrackingLoggedModel.owner_id == user.id,
        TrackingRun.course_id.in_(staffed_courses(user.id)),
        TrackingRun.job_id.in_(seen_jobs),
        TrackingRun.created_by_job_id.in_(seen_jobs),
    )


def search(
    session: Session,
    principal: Principal,
    experiment_ids: list[str],
    filter_string: str | None,
    datasets: list[dict[str, Any]] | None,
    max_results: int | None,
    order_by: list[dict[str, Any]] | None,
    page_token: str | None,
) -> tuple[list[LoggedModel], str | None]:
    size = max_results or DEFAULT_RESULTS
    if size < 0 or size > MAX_RESULTS:
        raise invalid(
            f"Invalid value {max_results} for parameter 'max_results': a positive integer at most {MAX_RESULTS}"
        )
    if datasets and not all(d.get("dataset_name") for d in datasets):
        raise invalid("`dataset_name` in the `datasets` clause must be specified.")
    mlflow_checked(lambda: SearchLoggedModelsUtils.parse_search_filter(filter_string))
    for clause in order_by or []:
        mlflow_checked(lambda clause=clause: SearchLoggedModelsUtils.parse_order_by_for_logged_models(clause))
    experiments = []
    for experiment_id in experiment_ids:
        try:
            experiments.append(readable_experiment(session, principal, experiment_id).id)
        except TrackingError:  # an experiment the caller cannot read holds nothing for them
            continue
    rows = []
    if experiments:
        rows = session.scalars(
            select(TrackingLoggedModel)
            .outerjoin(TrackingRun, TrackingRun.id == TrackingLoggedModel.run_id)
            .where(
                TrackingLoggedModel.experiment_id.in_(experiments),
                TrackingLoggedModel.lifecycle_stage == ACTIVE,
                _seen(principal),
            )
        ).all()
    models = [entity(row) for row in rows]
    try:
        models = mlflow_checked(lambda: SearchLoggedModelsUtils.filter_logged_models(models, filter_string, datasets))
        models = mlflow_checked(lambda: SearchLoggedModelsUtils.sort(models, order_by))
    except (TypeError, ValueError) as exc:  # a value the filter cannot compare (a metric against a word)
        raise invalid(f"Invalid filter {filter_string!r}: {exc}") from None
    page, token = mlflow_checked(lambda: SearchLoggedModelsUtils.paginate(models, page_token, size))
    return page, token.decode() if isinstance(token, bytes) else token


# ---- a run's inputs and outputs ------------------------------------------------------------


def _run_row(session: Session, principal: Principal, run_id: str) -> TrackingRun:
    ref = writable_run(session, principal, run_id)
    row = job_row(session, ref) if ref.job is not None else ref.row
    if row.lifecycle_stage != ACTIVE:
        raise invalid(f"The run {run_id} must be in the 'active' state. Current state is {row.lifecycle_stage}.")
    return row


def log_outputs(session: Session, principal: Principal, run_id: str, outputs: list[LoggedModelOutput]) -> None:
    """Models as the run's outputs: each must be one the caller may change, logged from that run."""
    row = _run_row(session, principal, run_id)
    for output in outputs:
        model, _ = writable_model(session, principal, output.model_id)
        if model.run_id != row.id:
            raise invalid(
                f"Logged model {output.model_id} was logged from run {model.run_id or '(none)'}; labtrain keeps a "
                f"model as an output of the run it was logged from, not of run {run_id}"
            )
        model.output_step, model.last_updated_time = int(output.step or 0), now_ms()


def log_inputs(
    session: Session,
    principal: Principal,
    run_id: str,
    datasets: list[DatasetInput],
    models: list[LoggedModelInput],
) -> None:
    """Data sets and models the run used, kept once each (by name and digest, by model id)."""
    mlflow_checked(lambda: _validate_dataset_inputs(datasets))
    row = _run_row(session, principal, run_id)
    wanted: dict[tuple[str, str], dict[str, Any]] = {}
    for dataset_input in datasets:
        data = json.loads(message_to_json(dataset_input.to_proto()))
        if len(json.dumps(data)) > MAX_INPUT_BYTES:
            raise TrackingError(
                "RESOURCE_LIMIT_EXCEEDED",
                f"data set {dataset_input.dataset.name[:100]!r} is larger than the {MAX_INPUT_BYTES // 1024} KB "
                "labtrain keeps of one input (its schema and profile); log a smaller profile",
            )
        dataset = dataset_input.dataset
        wanted.setdefault(("dataset", f"{dataset.name}\n{dataset.digest}"), data)
    for model_input in models:
        readable_model(session, principal, model_input.model_id)
        wanted.setdefault(("model", model_input.model_id), {"model_id": model_input.model_id})
    existing = set(
        session.execute(select(TrackingRunInput.kind, TrackingRunInput.key).where(TrackingRunInput.run_id == row.id))
    )
    new = {key: data for key, data in wanted.items() if key not in existing}
    if len(existing) + len(new) > MAX_RUN_INPUTS:
        raise TrackingError(
            "RESOURCE_LIMIT_EXCEEDED", f"a run keeps at most {MAX_RUN_INPUTS} inputs; run {run_id} would have more"
        )
    for (kind, key), data in new.items():
        try:
            with session.begin_nested():
                session.add(TrackingRunInput(run_id=row.id, kind=kind, key=key, data=data))
        except IntegrityError:  # kept meanwhile by a concurrent request
            pass
