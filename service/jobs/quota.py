"""A user's storage quota: what their files take, by kind, against what they may take.

Data sets and sources carry their size in their rows; an upload under way holds its whole
announced length (it is on its way); a model is one file (one stat each); a job's folder
(log, checkpoints, a code job's outputs) is measured once after the job ended and the figure
kept in `jobs.storage_bytes`, so no request walks disks more than once per job. A running
job's folder is not counted until it ends. The artifacts of a user's MLflow runs that are not
jobs are walked when counted (one folder per user). The quota is `storage_quota_mb`, overridden per
user by an admin like the other limits (service/jobs/limits.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.core import storage
from service.core.config import Settings
from service.core.errors import ServiceError
from service.core.orm import Dataset, Job, Model, Source, Upload, User
from service.jobs.lifecycle import FINISHED
from service.jobs.limits import effective_limits

KINDS = ("datasets", "sources", "jobs", "models", "uploads", "runs")
MB = 1024 * 1024


class QuotaExceeded(ServiceError):
    status = 413
    code = "quota_exceeded"


def quota_bytes(settings: Settings, user: User) -> int:
    return effective_limits(settings, user)["storage_quota_mb"] * MB


def used_by_kind(session: Session, settings: Settings, user: User, except_upload: str | None = None) -> dict[str, int]:
    """Bytes the user's files take, by kind; `except_upload` leaves out the upload being used."""
    _measure_finished_jobs(session, settings, user)

    def total(column, *where) -> int:
        return int(session.scalar(select(func.coalesce(func.sum(column), 0)).where(*where)) or 0)

    models = session.scalars(select(Model.artifact_path).where(Model.owner_id == user.id))
    uploads = [Upload.owner_id == user.id] + ([Upload.id != except_upload] if except_upload else [])
    return {
        "datasets": total(Dataset.size_bytes, Dataset.owner_id == user.id),
        "sources": total(Source.size_bytes, Source.owner_id == user.id),
        "jobs": total(Job.storage_bytes, Job.owner_id == user.id),
        "models": sum(storage.folder_bytes(Path(path)) for path in models),
        "uploads": total(Upload.length, *uploads),
        # MLflow runs that are not jobs: their artifact files (a job's run's are the job's)
        "runs": storage.folder_bytes(storage.mlflow_runs_dir(settings, user.id)),
    }


def storage_view(session: Session, settings: Settings, user: User) -> dict[str, Any]:
    """What GET /api/v1/me says of the user's storage."""
    by_kind = used_by_kind(session, settings, user)
    return {"used_bytes": sum(by_kind.values()), "quota_bytes": quota_bytes(settings, user), "by_kind": by_kind}


def check_room(
    session: Session, settings: Settings, user: User, upload_bytes: int, except_upload: str | None = None
) -> None:
    """A 413 `quota_exceeded` naming what is used, what is allowed and the fix, when `upload_bytes`
    more would take the user past their quota."""
    by_kind = used_by_kind(session, settings, user, except_upload)
    used, quota = sum(by_kind.values()), quota_bytes(settings, user)
    if used + upload_bytes <= quota:
        return
    taken = ", ".join(f"{kind} {human(size)}" for kind, size in by_kind.items() if size)
    raise QuotaExceeded(
        f"this upload of {human(upload_bytes)} would take you past your storage quota: you use "
        f"{human(used)} ({taken or 'nothing yet'}) of {human(quota)} allowed; delete data sets or sources "
        "you no longer need, or ask an admin for a larger quota",
        field="file",
        details={"used_bytes": used, "quota_bytes": quota, "upload_bytes": upload_bytes, "by_kind": by_kind},
    )


def human(size: int) -> str:
    """1.5 GB, 230 MB, 12 KB: what a message shows."""
    for unit, scale in (("GB", 1024**3), ("MB", MB), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


def _measure_finished_jobs(session: Session, settings: Settings, user: User) -> None:
    """Each finished job's folder measured once (null: not yet), kept for every later count."""
    unmeasured = session.scalars(
        select(Job).where(Job.owner_id == user.id, Job.status.in_(FINISHED), Job.storage_bytes.is_(None))
    ).all()
    for job in unmeasured:
        job.storage_bytes = storage.folder_bytes(storage.job_dir(settings, job.id))
    if unmeasured:
        session.commit()
