"""Retention (`labtrain admin prune`): removing the files of jobs that finished long ago.

A job's files are its directory under the artifact directory (`jobs/<id>`: log,
checkpoints, a search's saved state) and its model. Only jobs that finished (succeeded,
failed or cancelled) before the cutoff are touched; queued and running jobs never are. A
model of such a job is removed too (file and row), unless something that is kept still
refers to it:
  - a job that is kept names it as its `result.model_id` (a search's best model is a
    trial's model: it stays while the search is kept), or
  - its job is a trial of a search that is kept (the search may still pick it as its best).
Job rows, their metrics, events and uploaded data sets are kept. Each pruned job gets a
`log` event saying so, and each prune is written to the audit log.

A prune is planned first (what would go, and its size), then recorded in the database,
then the files are removed: the rows are gone (committed) before the files, so no row
ever points at a missing file.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import and_, delete, not_, or_, select
from sqlalchemy.orm import Session

from service.core import storage
from service.core.config import Settings
from service.core.orm import AuditEntry, Job, Model
from service.jobs.lifecycle import FINISHED, add_event


@dataclass
class ModelFile:
    model_id: str
    job_id: str
    path: Path
    size: int
    outside: bool = False  # outside the artifact directory: never removed


@dataclass
class PrunePlan:
    cutoff: datetime
    old_jobs: int = 0
    directories: list[tuple[Path, int]] = field(default_factory=list)  # (path, bytes)
    models: list[ModelFile] = field(default_factory=list)  # in the order found

    @property
    def removed_models(self) -> list[ModelFile]:
        return [m for m in self.models if not m.outside]

    @property
    def bytes(self) -> int:
        return sum(size for _path, size in self.directories) + sum(m.size for m in self.removed_models)


def plan(session: Session, settings: Settings, cutoff: datetime, keep_models: bool = False) -> PrunePlan:
    """What a prune with this cutoff would remove."""
    old = and_(Job.status.in_(FINISHED), Job.finished_at < cutoff)
    found = PrunePlan(cutoff)
    old_ids = list(session.scalars(select(Job.id).where(old).order_by(Job.id)))
    found.old_jobs = len(old_ids)
    for job_id in old_ids:
        path = storage.job_dir(settings, job_id)
        if path.exists():
            found.directories.append((path, _size(path)))
    if keep_models:
        return found
    kept = not_(old)
    referenced = set(session.scalars(select(Job.result["model_id"].as_string()).where(kept, Job.result.is_not(None))))
    kept_parents = select(Job.id).where(kept)
    candidates = session.scalars(
        select(Model)
        .join(Job, Job.id == Model.job_id)
        .where(old, or_(Job.parent_id.is_(None), Job.parent_id.not_in(kept_parents)))
        .order_by(Model.id)
    )
    for model in candidates:
        if model.id in referenced:
            continue
        path = Path(model.artifact_path)
        outside = not _inside(path, settings.artifact_dir)
        found.models.append(ModelFile(model.id, model.job_id, path, 0 if outside else _size(path), outside))
    return found


def record(session: Session, pruned: PrunePlan, actor: str) -> None:
    """The removed models' rows deleted, an event on each pruned job, one audit entry."""
    removed = pruned.removed_models
    if not pruned.directories and not removed:
        return
    if removed:
        session.execute(delete(Model).where(Model.id.in_([m.model_id for m in removed])))
    model_jobs = {m.job_id for m in removed}
    pruned_jobs = sorted({path.name for path, _size in pruned.directories} | model_jobs)
    for job_id in pruned_jobs:
        add_event(
            session,
            job_id,
            "log",
            {
                "message": f"files removed by {actor} (retention: finished before {pruned.cutoff:%Y-%m-%d %H:%M} UTC)"
                + ("; its model was removed" if job_id in model_jobs else ""),
                "audit": "prune",
                "by": actor,
            },
        )
    session.add(
        AuditEntry(
            actor=actor,
            action="prune",
            target=f"finished before {pruned.cutoff.isoformat()}",
            details={
                "cutoff": pruned.cutoff.isoformat(),
                "jobs": len(pruned_jobs),
                "job_directories": len(pruned.directories),
                "models": [m.model_id for m in removed],
                "bytes_freed": pruned.bytes,
            },
        )
    )


def remove_files(pruned: PrunePlan) -> None:
    for path, _size in pruned.directories:
        _remove(path)
    for model in pruned.removed_models:
        _remove(model.path)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return path.stat().st_size if path.exists() else 0


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())
