"""Jobs as MLflow runs, and runs that are not jobs, built as mlflow.entities.

Every job a caller may see is a run: its id is `job_run_id(job.id)`, its status the job's,
its params the job's spec flattened with dots, its metrics the job's latest metrics, its tags
say which job, family and course it is (a search's trials name their search's run as parent).
What a job's run holds beyond that (params and tags logged to it, the experiment it moved to,
a deletion) is its TrackingRun row (job_id set). Runs that are not jobs are rows of their own."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from mlflow.entities import Metric, Param, Run, RunData, RunInfo, RunTag
from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH, MAX_PARAM_VAL_LENGTH

from service.core.orm import Job, JobEvent, TrackingRun
from service.jobs import keep_model, lifecycle
from service.tracking.run_ids import JOB_RUN_SUFFIX, job_run_id

DEFAULT_EXPERIMENT_ID = 0
JOBS_EXPERIMENT_ID = 1
SHARED_EXPERIMENTS = {DEFAULT_EXPERIMENT_ID: "Default", JOBS_EXPERIMENT_ID: "labtrain-jobs"}

JOB_STATUS = {
    "queued": "SCHEDULED",
    "running": "RUNNING",
    "succeeded": "FINISHED",
    "failed": "FAILED",
    "cancelled": "KILLED",
}

# Tags labtrain sets on a job's run; what is logged to it cannot replace them.
KIND_TAG, JOB_TAG, FAMILY_TAG, COURSE_TAG = "labtrain.kind", "labtrain.job", "labtrain.family", "labtrain.course"
RUN_NAME_TAG, PARENT_TAG, USER_TAG = "mlflow.runName", "mlflow.parentRunId", "mlflow.user"
RESERVED_JOB_TAGS = frozenset({KIND_TAG, JOB_TAG, FAMILY_TAG, COURSE_TAG, PARENT_TAG})


def job_id_of(run_id: str) -> str | None:
    """The job a run id names, or None for a run that is not a job."""
    if len(run_id) == 32 and run_id.endswith(JOB_RUN_SUFFIX):
        return run_id[:22]
    return None


def new_run_id() -> str:
    """A run id for a run that is not a job: never one a job's could be."""
    while True:
        run_id = uuid.uuid4().hex
        if job_id_of(run_id) is None:
            return run_id


def artifact_uri(experiment_id: int | str, run_id: str) -> str:
    """Where a run's artifacts are, as MLflow's client reaches them: the proxied artifact routes
    (service/tracking/artifacts.py reads the run id, the second component, and ignores the first)."""
    return f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts"


def millis(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def flatten_spec(spec: Any, prefix: str = "") -> dict[str, str]:
    """A job's spec as MLflow params: nested keys joined with dots, values as strings within
    MLflow's lengths (a key too long for MLflow is left out)."""
    params: dict[str, str] = {}
    if isinstance(spec, dict) and spec:
        for key, value in spec.items():
            params.update(flatten_spec(value, f"{prefix}.{key}" if prefix else str(key)))
    elif prefix and len(prefix) <= MAX_ENTITY_KEY_LENGTH:
        text = _as_text(spec)
        params[prefix] = text[:MAX_PARAM_VAL_LENGTH]
    return params


def _as_text(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def finite_metrics(values: dict[str, Any] | None) -> dict[str, float]:
    """The numeric entries of a job's metrics (no booleans, no nested values)."""
    out: dict[str, float] = {}
    for key, value in (values or {}).items():
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[key] = float(value)
    return out


def job_tags(job: Job, course_name: str | None, owner_name: str) -> dict[str, str]:
    tags = {
        RUN_NAME_TAG: job.name or job.id,
        KIND_TAG: "job",
        JOB_TAG: job.id,
        FAMILY_TAG: job.family,
        USER_TAG: owner_name,
    }
    if course_name:
        tags[COURSE_TAG] = course_name
    if job.parent_id:
        tags[PARENT_TAG] = job_run_id(job.parent_id)
    return tags


def job_as_run(
    job: Job,
    row: TrackingRun | None,
    owner_name: str,
    course_name: str | None,
    logged_params: dict[str, str],
    logged_tags: dict[str, str],
) -> Run:
    run_id = job_run_id(job.id)
    experiment_id = row.experiment_id if row is not None else JOBS_EXPERIMENT_ID
    # Logged tags add to labtrain's (and may rename the run); they never replace which job it is.
    tags = {**job_tags(job, course_name, owner_name)}
    tags.update({k: v for k, v in logged_tags.items() if k not in RESERVED_JOB_TAGS})
    # A trial's model rule (the search's best score when it was submitted) is no parameter of it.
    params = {**flatten_spec(keep_model.split(job.spec or {})[0]), **logged_params}
    at = millis(job.finished_at) or millis(job.heartbeat_at) or millis(job.created_at) or 0
    metrics = [Metric(key, value, at, 0) for key, value in finite_metrics(job.metrics).items()]
    info = RunInfo(
        run_id=run_id,
        experiment_id=str(experiment_id),
        user_id=owner_name,
        status=JOB_STATUS.get(job.status, "RUNNING"),
        start_time=millis(job.started_at) or millis(job.created_at) or 0,
        end_time=millis(job.finished_at),
        lifecycle_stage=row.lifecycle_stage if row is not None else "active",
        artifact_uri=artifact_uri(experiment_id, run_id),
        run_name=tags[RUN_NAME_TAG],
    )
    return Run(info, _data(metrics, params, tags))


def row_as_run(
    row: TrackingRun,
    owner_name: str,
    params: dict[str, str],
    tags: dict[str, str],
    latest: Iterable[Metric],
) -> Run:
    tags = {USER_TAG: owner_name, **tags, KIND_TAG: "run"}
    if row.name is not None:
        tags[RUN_NAME_TAG] = row.name
    info = RunInfo(
        run_id=row.id,
        experiment_id=str(row.experiment_id),
        user_id=owner_name,
        status=row.status,
        start_time=row.start_time,
        end_time=row.end_time,
        lifecycle_stage=row.lifecycle_stage,
        artifact_uri=artifact_uri(row.experiment_id, row.id),
        run_name=row.name or "",
    )
    return Run(info, _data(list(latest), params, tags))


def _data(metrics: list[Metric], params: dict[str, str], tags: dict[str, str]) -> RunData:
    return RunData(
        metrics=metrics,
        params=[Param(k, v) for k, v in params.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )


def event_points(event: JobEvent) -> list[tuple[str, float, int, int]]:
    """The points (key, value, timestamp ms, step) of a job's epoch or metrics event."""
    data = event.data or {}
    if event.type == "epoch":
        step = data.get("epoch")
    elif event.type == "metrics":
        step = data.get("step")
    else:
        return []
    if not isinstance(step, int) or isinstance(step, bool):
        return []
    at = millis(event.time) or 0
    skip = {"epoch", *lifecycle.METRICS_EVENT_FIELDS}
    return [(key, value, at, step) for key, value in finite_metrics(data).items() if key not in skip]
