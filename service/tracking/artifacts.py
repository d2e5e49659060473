"""MLflow's proxied artifact service (`mlflow-artifacts`), as its client uses a tracking server
started with --serve-artifacts: a run's artifact_uri is `mlflow-artifacts:/<experiment>/<run_id>/
artifacts`, and the client uploads (PUT), downloads (GET), lists (GET ?path=) and deletes
(DELETE) under /api/2.0/mlflow-artifacts/artifacts/<that path>/<file>.

The run id (the path's second component) decides everything: the caller must be allowed to
write that run (upload, delete) or read it (download, list), else the answer is the missing
run's 404; the first component, the experiment the run was made in, is not looked at (a run
may move). Where the files live:
- a job's run: among the job's outputs (outputs/mlflow/), so the job's artifact routes and the
  dashboard list them; bounded by the job's outputs limit (LABTRAIN_MAX_OUTPUTS_MB);
- a run a job made under its own: outputs/mlflow-runs/<run_id>/ of that job, with the same bound;
- any other run: a folder of its own under the artifact directory (storage.mlflow_runs_dir),
  counted against its owner's storage quota (service/jobs/quota.py, kind `runs`).
A logged model's files (`mlflow-artifacts:/<experiment>/models/<model_id>/artifacts`, as MLflow's
server names them) are decided by the model's run (service/tracking/logged_models.py) and kept
with that run's files, under models/<model_id>/, with the same bound.
Past the bound the answer is MLflow's RESOURCE_LIMIT_EXCEEDED with a 413. No Flask here: the
API's routes (service/api/mlflow_artifacts.py) and a job's own endpoint both call `handle`.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from sqlalchemy.orm import Session

from service.core import storage
from service.core.config import Settings
from service.core.orm import User
from service.jobs import quota
from service.tracking.artifact_files import CHUNK, Missing, RunFolder, TooLarge, UnsafePath, split_path
from service.tracking.errors import TrackingError
from service.tracking.logged_models import MODELS_FOLDER, readable_model, writable_model
from service.tracking.principal import Principal, RunRef, readable_run, writable_run

MB = 1024 * 1024
ROOT_NAME = "artifacts"  # the third component of every artifact path: <experiment>/<run_id>/artifacts
DRAIN_LIMIT = 16 * MB  # of a refused body, what is still read (and dropped) so the client reads the answer
NOT_IMPLEMENTED = {
    "mpu": "multipart uploads are not offered here; the client uploads the file in one PUT instead",
    "presigned": "presigned downloads are not offered here; the client downloads through this server instead",
}


def artifact_uri(experiment_id: int | str, run_id: str) -> str:
    """A run's artifact_uri, as MLflow's client resolves it against the tracking URI."""
    return f"mlflow-artifacts:/{experiment_id}/{run_id}/{ROOT_NAME}"


@dataclass(frozen=True)
class ArtifactFile:
    """A file to send: open for reading (the caller closes it), its size and its name."""

    handle: BinaryIO
    size: int
    name: str


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any] | None = None  # MLflow's JSON answer (an error in MLflow's shape)
    file: ArtifactFile | None = None  # a download


def handle(
    session: Session,
    settings: Settings,
    principal: Principal,
    method: str,
    endpoint: str,
    query: Mapping[str, list[str]],
    body: BinaryIO | None,
    length: int | None = None,
) -> Answer:
    """One request: `endpoint` is the path after /api/2.0/mlflow-artifacts/ ("artifacts",
    "artifacts/1/<run_id>/artifacts/model.pkl", "mpu/create/..."), decoded; `query` the query
    string as lists of values; `body` the request's body as a stream and `length` its declared
    Content-Length, if any (an upload past the bound is refused before a byte is written)."""
    try:
        method = "GET" if method.upper() == "HEAD" else method.upper()  # the server leaves the body out
        return _route(session, settings, principal, method, endpoint, query, body, length)
    except TrackingError as exc:
        return Answer(exc.status, exc.body())


def _route(
    session: Session,
    settings: Settings,
    principal: Principal,
    method: str,
    endpoint: str,
    query: Mapping[str, list[str]],
    body: BinaryIO | None,
    length: int | None,
) -> Answer:
    service, _, rest = endpoint.strip("/").partition("/")
    if service in NOT_IMPLEMENTED:
        return Answer(501, TrackingError("NOT_IMPLEMENTED", NOT_IMPLEMENTED[service]).body())
    if service != "artifacts":
        raise TrackingError("ENDPOINT_NOT_FOUND", f"no MLflow artifact endpoint {endpoint[:100]!r}")
    if not rest:
        if method != "GET":
            raise _wrong_method(method, "GET")
        values = query.get("path") or [""]
        return _list(session, settings, principal, values[0])
    if method == "GET":
        return _download(session, settings, principal, rest)
    if method == "PUT":
        return _upload(session, settings, principal, rest, body, length)
    if method == "DELETE":
        return _delete(session, settings, principal, rest)
    raise _wrong_method(method, "GET, PUT, DELETE")


@dataclass(frozen=True)
class _Target:
    """One request's run (or logged model), where its files are and what bounds them, and the
    path within it."""

    owner_id: str
    folder: RunFolder
    parts: list[str]
    job_id: str | None  # bounded by this job's outputs limit; else by the owner's storage quota


def _target(session: Session, settings: Settings, principal: Principal, path: str, write: bool) -> _Target:
    try:
        components = split_path(path)
    except UnsafePath as exc:
        raise TrackingError("INVALID_PARAMETER_VALUE", f"Invalid path {path[:200]!r}: {exc}") from None
    if len(components) >= 4 and components[1] == MODELS_FOLDER and components[3] == ROOT_NAME:
        return _model_target(session, settings, principal, components, write)
    if len(components) < 3 or components[2] != ROOT_NAME:
        raise TrackingError(
            "RESOURCE_DOES_NOT_EXIST",
            f"no artifacts at {path[:200]!r}: name them as a run's artifact_uri does, "
            f"<experiment_id>/<run_id>/{ROOT_NAME}[/<path>]",
        )
    run_id = components[1]
    ref = writable_run(session, principal, run_id) if write else readable_run(session, principal, run_id)
    base, job_id = _placement(settings, ref)
    return _Target(ref.owner_id, RunFolder(settings.artifact_dir, base), components[3:], job_id)


def _model_target(
    session: Session, settings: Settings, principal: Principal, components: list[str], write: bool
) -> _Target:
    """A logged model's files (<experiment>/models/<model_id>/artifacts/...): decided by the model's
    run, and kept with that run's artifacts under models/<model_id>/ (a model logged without a
    run: under its owner's MLflow folder)."""
    model_id = components[2]
    row, ref = (writable_model if write else readable_model)(session, principal, model_id)
    if ref is not None:
        base, job_id = _placement(settings, ref)
    else:
        base = tuple(storage.mlflow_runs_dir(settings, row.owner_id).relative_to(settings.artifact_dir).parts)
        job_id = None
    folder = RunFolder(settings.artifact_dir, (*base, MODELS_FOLDER, row.id))
    return _Target(row.owner_id, folder, components[4:], job_id)


def _placement(settings: Settings, ref: RunRef) -> tuple[tuple[str, ...], str | None]:
    """The run's folder (relative to the artifact directory) and the job whose outputs hold it."""

    def under_artifacts(path) -> tuple[str, ...]:
        return path.relative_to(settings.artifact_dir).parts

    if ref.job is not None:
        return (*under_artifacts(storage.job_outputs_dir(settings, ref.job.id)), "mlflow"), ref.job.id
    maker = ref.row.created_by_job_id if ref.row is not None else None
    if maker is not None:
        outputs = under_artifacts(storage.job_outputs_dir(settings, maker))
        return (*outputs, "mlflow-runs", ref.run_id), maker
    return (*under_artifacts(storage.mlflow_runs_dir(settings, ref.owner_id)), ref.run_id), None


def _list(session: Session, settings: Settings, principal: Principal, path: str) -> Answer:
    target = _target(session, settings, principal, path, write=False)
    files = []
    for entry in _unsafe_as_invalid(path, target.folder.list, target.parts):
        item: dict[str, Any] = {"path": entry.name, "is_dir": entry.is_dir}
        if entry.size is not None:
            item["file_size"] = entry.size
        files.append(item)
    return Answer(200, {"files": files})


def _download(session: Session, settings: Settings, principal: Principal, path: str) -> Answer:
    target = _target(session, settings, principal, path, write=False)
    try:
        handle, size = _unsafe_as_invalid(path, target.folder.open, target.parts)
    except Missing:
        raise TrackingError("RESOURCE_DOES_NOT_EXIST", f"no artifact file at {path[:200]!r}") from None
    return Answer(200, file=ArtifactFile(handle, size, target.parts[-1]))


def _upload(
    session: Session,
    settings: Settings,
    principal: Principal,
    path: str,
    body: BinaryIO | None,
    length: int | None,
) -> Answer:
    target = _target(session, settings, principal, path, write=True)
    if not target.parts:
        raise TrackingError("INVALID_PARAMETER_VALUE", f"Invalid path {path[:200]!r}: name a file to upload")
    room, why = _room(session, settings, target)
    try:
        if length is not None and length > room:
            raise TooLarge(room)
        _unsafe_as_invalid(path, target.folder.write, target.parts, body or io.BytesIO(), max(room, 0))
    except TooLarge:
        _drain(body, DRAIN_LIMIT if length is None else min(length, DRAIN_LIMIT))
        name = path.rsplit("/", 1)[-1][:100]
        raise TrackingError("RESOURCE_LIMIT_EXCEEDED", f"{name} was not stored: {why}", 413) from None
    return Answer(200, {})


def _delete(session: Session, settings: Settings, principal: Principal, path: str) -> Answer:
    target = _target(session, settings, principal, path, write=True)
    _unsafe_as_invalid(path, target.folder.delete, target.parts)
    return Answer(200, {})


def _room(session: Session, settings: Settings, target: _Target) -> tuple[int, str]:
    """How many bytes the file may have (what it replaces is given back), and why not more."""
    replaced = target.folder.size_of(target.parts)
    if target.job_id is not None:
        limit = settings.max_outputs_mb * MB
        used = storage.folder_bytes(storage.job_outputs_dir(settings, target.job_id))
        why = (
            f"job {target.job_id}'s outputs hold {quota.human(used)} of the {settings.max_outputs_mb} MB a job may "
            "keep (LABTRAIN_MAX_OUTPUTS_MB); log fewer or smaller artifacts"
        )
        return limit - used + replaced, why
    owner = session.get(User, target.owner_id)
    used = sum(quota.used_by_kind(session, settings, owner).values())
    allowed = quota.quota_bytes(settings, owner)
    why = (
        f"the run's owner {owner.name} uses {quota.human(used)} of their {quota.human(allowed)} storage quota; "
        "delete artifacts, data sets or sources no longer needed, or ask an admin for a larger quota"
    )
    return allowed - used + replaced, why


def _unsafe_as_invalid(path: str, action, *args):
    try:
        return action(*args)
    except UnsafePath as exc:
        raise TrackingError("INVALID_PARAMETER_VALUE", f"Invalid path {path[:200]!r}: {exc}") from None


def _drain(body: BinaryIO | None, limit: int) -> None:
    """Read and drop up to `limit` more bytes of a refused body: a client that is still
    sending then reads the answer instead of a reset connection."""
    left = limit
    while body is not None and left > 0 and (chunk := body.read(min(CHUNK, left))):
        left -= len(chunk)


def _wrong_method(method: str, allowed: str) -> TrackingError:
    return TrackingError("ENDPOINT_NOT_FOUND", f"{method} is not served here; this endpoint takes {allowed}", 405)
