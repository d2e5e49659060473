"""Retention (`labtrain admin prune`): removing the files of jobs that finished long ago,
and of courses closed long ago.

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

A course whose term_end is more than `course_retention_days` ago, and that was not pruned
yet, has every finished job of it pruned as above, whenever it finished. Once none of its
jobs is queued or running, its data sets go too (files and rows; one a competition names
as its test set stays) and the course is marked pruned (`pruned_at`), with an audit entry of
its own; with --keep-models it is not marked, so a later prune removes its models then. A
marked course's competitions keep their submissions' scores; the predictions files go.

A prune is planned first (what would go, and its size), then recorded in the database,
then the files are removed: the rows are gone (committed) before the files, so no row
ever points at a missing file.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import and_, delete, false, not_, or_, select, update
from sqlalchemy.orm import Session

from service.core import storage
from service.core.config import Settings
from service.core.orm import AuditEntry, Competition, CompetitionSubmission, Course, Dataset, Job, Model, utcnow
from service.jobs.lifecycle import FINISHED, add_event


@dataclass
class ModelFile:
    model_id: str
    job_id: str
    path: Path
    size: int
    outside: bool = False  # outside the artifact directory: never removed


@dataclass
class DatasetFile:
    dataset_id: str
    path: Path
    size: int
    kept: str | None = None  # why it stays: a competition's test set, or a file outside the artifact directory


@dataclass
class ClosedCourse:
    """A course past its retention: its data sets, and whether it can be marked pruned now."""

    course_id: str
    name: str
    term_end: date
    jobs: int = 0  # its finished jobs (pruned with the others)
    unfinished: int = 0  # its queued or running jobs: the course waits for them
    datasets: list[DatasetFile] = field(default_factory=list)
    # Its competitions' folders (the predictions files submitted), removed once it is marked.
    competition_folders: list[tuple[Path, int]] = field(default_factory=list)
    marked: bool = False  # pruned_at is set now

    @property
    def removed_datasets(self) -> list[DatasetFile]:
        return [d for d in self.datasets if d.kept is None]


@dataclass
class PrunePlan:
    cutoff: datetime
    old_jobs: int = 0
    directories: list[tuple[Path, int]] = field(default_factory=list)  # (path, bytes)
    models: list[ModelFile] = field(default_factory=list)  # in the order found
    courses: list[ClosedCourse] = field(default_factory=list)
    closed_course_of: dict[str, ClosedCourse] = field(default_factory=dict)  # by job id: why a recent job goes

    @property
    def removed_models(self) -> list[ModelFile]:
        return [m for m in self.models if not m.outside]

    @property
    def removed_datasets(self) -> list[DatasetFile]:
        return [d for course in self.courses for d in course.removed_datasets]

    @property
    def competition_folders(self) -> list[tuple[Path, int]]:
        return [folder for course in self.courses if course.marked for folder in course.competition_folders]

    @property
    def bytes(self) -> int:
        return (
            sum(size for _path, size in self.directories)
            + sum(m.size for m in self.removed_models)
            + sum(d.size for d in self.removed_datasets)
            + sum(size for _path, size in self.competition_folders)
        )


def plan(
    session: Session, settings: Settings, cutoff: datetime, keep_models: bool = False, today: date | None = None
) -> PrunePlan:
    """What a prune with this cutoff would remove (courses: as of `today`, UTC)."""
    found = PrunePlan(cutoff)
    found.courses = _closed_courses(session, settings, today or utcnow().date())
    of_closed = Job.course_id.in_([c.course_id for c in found.courses]) if found.courses else false()
    old = and_(Job.status.in_(FINISHED), or_(Job.finished_at < cutoff, of_closed))
    _plan_courses(session, settings, found.courses, keep_models)
    old_rows = session.execute(select(Job.id, Job.course_id).where(old).order_by(Job.id)).all()
    old_ids = [job_id for job_id, _course in old_rows]
    found.old_jobs = len(old_ids)
    by_id = {c.course_id: c for c in found.courses}
    found.closed_course_of = {job_id: by_id[course] for job_id, course in old_rows if course in by_id}
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


def _closed_courses(session: Session, settings: Settings, today: date) -> list[ClosedCourse]:
    """The courses not yet pruned whose term_end is more than the retention ago."""
    last_kept = today - timedelta(days=settings.course_retention_days)
    rows = session.scalars(
        select(Course).where(Course.pruned_at.is_(None), Course.term_end < last_kept).order_by(Course.name)
    )
    return [ClosedCourse(c.id, c.name, c.term_end) for c in rows]


def _plan_courses(session: Session, settings: Settings, courses: list[ClosedCourse], keep_models: bool) -> None:
    """Each closed course's job counts, and its data sets once none of its jobs can still read them."""
    tests = set(session.scalars(select(Competition.test_dataset_id)))
    for course in courses:
        statuses = list(session.scalars(select(Job.status).where(Job.course_id == course.course_id)))
        course.jobs = sum(status in FINISHED for status in statuses)
        course.unfinished = len(statuses) - course.jobs
        if course.unfinished:
            continue
        rows = session.scalars(select(Dataset).where(Dataset.course_id == course.course_id).order_by(Dataset.name))
        for row in rows:
            path = Path(row.path)
            kept = "a competition's test set" if row.id in tests else None
            if kept is None and not _inside(path, settings.artifact_dir):
                kept = f"outside {settings.artifact_dir}"
            course.datasets.append(DatasetFile(row.id, path, 0 if kept else _size(path), kept))
        course.marked = not keep_models
        for competition_id in session.scalars(select(Competition.id).where(Competition.course_id == course.course_id)):
            folder = storage.competition_dir(settings, competition_id)
            if folder.exists():
                course.competition_folders.append((folder, _size(folder)))


def record(session: Session, pruned: PrunePlan, actor: str) -> None:
    """The removed models' and data sets' rows deleted, an event on each pruned job, an audit
    entry for the prune and one for each course marked pruned."""
    removed = pruned.removed_models
    _record_courses(session, pruned, actor)
    if not pruned.directories and not removed:
        return
    if removed:
        removed_ids = [m.model_id for m in removed]
        # A scored competition submission keeps its scores; the model it named is gone.
        session.execute(
            update(CompetitionSubmission).where(CompetitionSubmission.model_id.in_(removed_ids)).values(model_id=None)
        )
        session.execute(delete(Model).where(Model.id.in_(removed_ids)))
    model_jobs = {m.job_id for m in removed}
    pruned_jobs = sorted({path.name for path, _size in pruned.directories} | model_jobs)
    # Their folders are going: measured again (to what is left) when a storage quota next counts.
    session.execute(update(Job).where(Job.id.in_(pruned_jobs)).values(storage_bytes=None))
    for job_id in pruned_jobs:
        add_event(
            session,
            job_id,
            "log",
            {
                "message": f"files removed by {actor} (retention: {_why(pruned, job_id)})"
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


def _why(pruned: PrunePlan, job_id: str) -> str:
    course = pruned.closed_course_of.get(job_id)
    if course is not None:
        return f"its course {course.name} ended on {course.term_end.isoformat()}"
    return f"finished before {pruned.cutoff:%Y-%m-%d %H:%M} UTC"


def _record_courses(session: Session, pruned: PrunePlan, actor: str) -> None:
    gone = pruned.removed_datasets
    if gone:
        session.execute(delete(Dataset).where(Dataset.id.in_([d.dataset_id for d in gone])))
    for course in pruned.courses:
        if not course.marked:
            continue
        session.execute(update(Course).where(Course.id == course.course_id).values(pruned_at=utcnow()))
        # Submissions keep their scores; the predictions files they were made from go.
        of_course = select(Competition.id).where(Competition.course_id == course.course_id)
        session.execute(
            update(CompetitionSubmission)
            .where(CompetitionSubmission.competition_id.in_(of_course))
            .values(predictions_path=None)
        )
        session.add(
            AuditEntry(
                actor=actor,
                action="prune_course",
                target=course.name,
                details={
                    "term_end": course.term_end.isoformat(),
                    "jobs": course.jobs,
                    "datasets": [d.dataset_id for d in course.removed_datasets],
                    "kept_datasets": [d.dataset_id for d in course.datasets if d.kept],
                    "competitions": [folder.name for folder, _size in course.competition_folders],
                    "bytes_freed": sum(d.size for d in course.removed_datasets)
                    + sum(size for _path, size in course.competition_folders),
                },
            )
        )


def remove_files(pruned: PrunePlan) -> None:
    for path, _size in pruned.directories:
        _remove(path)
    for model in pruned.removed_models:
        _remove(model.path)
    for dataset in pruned.removed_datasets:
        _remove(dataset.path)
    for folder, _size in pruned.competition_folders:
        _remove(folder)


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
