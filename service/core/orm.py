"""The database rows (SQLAlchemy 2.0 ORM, typed). Alembic's migrations create exactly these."""

from __future__ import annotations

import math
import os
import threading
import time
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

JsonType = JSON().with_variant(JSONB(), "postgresql")


ID_PATTERN = r"[0-9a-f]{22}"  # what new_id makes


RANDOM_BITS = 40  # the 10 hex digits after the milliseconds
_last_id = [0, 0]  # this process's last id: its milliseconds and its random part
_id_lock = threading.Lock()


def new_id() -> str:
    """A time-ordered opaque id: 12 hex digits of milliseconds, then 10 random hex digits. A
    process's ids only grow: one in the same millisecond as its last takes that id's random part
    plus one, so a student's jobs submitted in one millisecond still start in the order sent
    (fair share orders one owner's jobs by id). Ids of different processes stay apart by their
    random parts, which start below half their range to leave room to count."""
    now = int(time.time() * 1000)
    with _id_lock:
        last_ms, last_random = _last_id
        if now <= last_ms and last_random + 1 < 1 << RANDOM_BITS:  # the same millisecond, or a clock set back
            now, random_part = last_ms, last_random + 1
        else:
            random_part = int.from_bytes(os.urandom(RANDOM_BITS // 8)) >> 1
            if now <= last_ms:  # the last millisecond's count is used up: the next one's
                now = last_ms + 1
        _last_id[:] = [now, random_part]
    return f"{now:012x}{random_part:010x}"


def _forget_last_id() -> None:
    _last_id[:] = [0, 0]  # a forked child counts from a random part of its own


os.register_at_fork(after_in_child=_forget_last_id)


def could_be_id(object_id: str) -> bool:
    """False for strings no id can be; PostgreSQL would refuse NUL bytes with an error, not a miss."""
    return len(object_id) <= 64 and "\x00" not in object_id


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class NanFloat(TypeDecorator):
    """A float that may be NaN on every backend: SQLite stores NaN as NULL, so NaN is NULL on all
    (MLflow's client logs NaN losses as they are)."""

    impl = Float
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is not None and math.isnan(value) else value

    def process_result_value(self, value, dialect):
        return math.nan if value is None else value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JsonType, list[Any]: JsonType, datetime: UtcDateTime}


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    # sha256 of the token: tokens are long random strings, so a fast hash is enough.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # An admin's overrides of the configured per-user limits (service/jobs/limits.py).
    limits: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # What a course's roster said of a student (service/courses/roster.py); none for others.
    full_name: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(255))


class Course(Base):
    """A course: its members hold roles in it (CourseMember), its jobs point at it."""

    __tablename__ = "courses"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    term_end: Mapped[date] = mapped_column(Date)  # the last day new jobs are taken
    # The course's weight against other courses on the lab's queue (service/lab/fair_share.py).
    share: Mapped[float] = mapped_column(Float, default=1.0, server_default="1")
    # Each student's budget for the term: {"gpu_hours", "cpu_hours", "week_gpu_hours"}; null:
    # unlimited (service/courses/budgets.py).
    budget: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When `labtrain admin prune` removed its files, once the retention after term_end ran out.
    pruned_at: Mapped[datetime | None]


class CourseGrant(Base):
    """Hours an instructor gave one student on top of the course's budget (they add up)."""

    __tablename__ = "course_grants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    course_id: Mapped[str] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    gpu_hours: Mapped[float] = mapped_column(Float, default=0.0)
    cpu_hours: Mapped[float] = mapped_column(Float, default=0.0)
    granted_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CourseMember(Base):
    """One role of one user in one course; a user may hold several."""

    __tablename__ = "course_members"
    __table_args__ = (UniqueConstraint("course_id", "user_id", "role", name="uq_course_members_course_user_role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    course_id: Mapped[str] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # instructor | ta | student
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # csv | npz | images (a folder of class folders)
    path: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(Integer)
    # Column names, kinds and missing-value counts (CSV), array shapes (NPZ), or classes and sizes (images).
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Published to a course: its members read it as {"course", "name"}; only its owner changes it.
    course_id: Mapped[str | None] = mapped_column(ForeignKey("courses.id"), index=True)


class Source(Base):
    """A student's code: one file or an unpacked project, stored read-only."""

    __tablename__ = "sources"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # py | ipynb | zip | tar.gz
    size_bytes: Mapped[int] = mapped_column(BigInteger)  # unpacked
    files: Mapped[list[Any]]  # [{"path", "size"}], in path order
    path: Mapped[str] = mapped_column(Text)  # the folder holding the files
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    # A trial number is taken by inserting its job: never twice in one search.
    __table_args__ = (Index("uq_jobs_parent_trial", "parent_id", "trial_number", unique=True),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    family: Mapped[str] = mapped_column(String(16))  # a name in the job-family registry (service/jobs/families.py)
    spec: Mapped[dict[str, Any]]
    queue: Mapped[str] = mapped_column(String(16), default="cpu")
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    time_limit_s: Mapped[int | None] = mapped_column(Integer)  # run time allowed per attempt
    event_seq: Mapped[int] = mapped_column(Integer, default=0)  # the last event's sequence number
    worker: Mapped[str | None] = mapped_column(String(255))
    progress: Mapped[dict[str, Any] | None]
    metrics: Mapped[dict[str, Any] | None]
    result: Mapped[dict[str, Any] | None]
    error_code: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    released_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # A search's trials are jobs of their own, each pointing at the search job.
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), index=True)
    trial_number: Mapped[int | None] = mapped_column(Integer)
    # debug (short, may preempt) or batch (service/jobs/tiers.py).
    tier: Mapped[str] = mapped_column(String(16), default="batch", server_default="batch")
    # On a shared GPU: the memory the job holds (MB), and the share of its GPU that is, set when
    # the dispatcher places it (fair share counts GPU-seconds times the share).
    gpu_memory_mb: Mapped[int | None] = mapped_column(Integer)
    gpu_share: Mapped[float | None] = mapped_column(Float)
    # The dispatcher asked the running job to checkpoint and yield its slot; how often it did.
    preempt_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    preemptions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The course it was submitted for (its staff may see it); none for research users' jobs.
    course_id: Mapped[str | None] = mapped_column(ForeignKey("courses.id"), index=True)
    # Why a queued job is not released yet: {"reason": "budget", "message"}; null when nothing holds it.
    waiting: Mapped[dict[str, Any] | None]
    # Device-seconds (GPU-seconds times gpu_share) held in attempts that went back to the queue
    # (lost worker, preemption): the run of the attempt now going is started_at to now.
    earlier_device_s: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # The bytes its folder holds (log, checkpoints, artifacts), measured once after it ended
    # (service/jobs/quota.py) so a storage quota never walks disks per request; null: not yet.
    storage_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # Its id in the execution backend its queue is served by (a SLURM job id: service/slurm), from
    # the submission until labtrain has seen that job end; null on Celery queues.
    backend_id: Mapped[str | None] = mapped_column(String(64))


class Upload(Base):
    """A resumable (tus) upload on its way: its bytes in a part file until it becomes a data set
    or a source (service/core/uploads.py); gone once used, deleted or expired."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # dataset | source
    filename: Mapped[str] = mapped_column(String(255))
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)  # Upload-Metadata's other keys (name, target)
    length: Mapped[int] = mapped_column(BigInteger)  # Upload-Length
    received: Mapped[int] = mapped_column(BigInteger, default=0)  # the offset: bytes written and synced
    path: Mapped[str] = mapped_column(Text)  # the part file
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)  # pushed on by each PATCH


class JobEvent(Base):
    __tablename__ = "job_events"
    __table_args__ = (UniqueConstraint("job_id", "seq", name="uq_job_events_job_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    time: Mapped[datetime] = mapped_column(default=utcnow)
    type: Mapped[str] = mapped_column(String(16))  # epoch | log | trial | status
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Model(Base):
    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), unique=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    framework: Mapped[str] = mapped_column(String(16))
    algorithm: Mapped[str | None] = mapped_column(String(64))
    task: Mapped[str] = mapped_column(String(16))
    input: Mapped[dict[str, Any]]
    classes: Mapped[list[Any] | None]
    class_names: Mapped[list[Any] | None]  # human names of integer labels, where the data has them
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    summary: Mapped[str | None] = mapped_column(Text)
    # How to rebuild and run it: layer list, API, input scaling, parameter counts, device.
    meta: Mapped[dict[str, Any] | None]
    artifact_path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Competition(Base):
    """A course's competition: models or predictions scored on a hidden, labelled test set."""

    __tablename__ = "competitions"
    __table_args__ = (UniqueConstraint("course_id", "name", name="uq_competitions_course_name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    course_id: Mapped[str] = mapped_column(ForeignKey("courses.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(32))  # accuracy | macro_f1 | rmse | mae | ...
    train: Mapped[dict[str, Any] | None]  # the course data set students train on: {"course", "name"}
    # The labelled hidden test set: a data set its labels never leave (service/competitions).
    test_dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"))
    target: Mapped[str] = mapped_column(String(255))
    public_fraction: Mapped[float] = mapped_column(Float, default=0.3)
    daily_limit: Mapped[int] = mapped_column(Integer, default=5)
    final_selections: Mapped[int] = mapped_column(Integer, default=2)
    closes_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CompetitionSubmission(Base):
    """One scoring of a student's model or predictions file; scored by a job on the CPU queue."""

    __tablename__ = "competition_submissions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    competition_id: Mapped[str] = mapped_column(ForeignKey("competitions.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    model_id: Mapped[str | None] = mapped_column(ForeignKey("models.id"))
    predictions_path: Mapped[str | None] = mapped_column(Text)  # an uploaded id,prediction CSV
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), index=True)  # the scoring job
    status: Mapped[str] = mapped_column(String(16), default="scoring")  # scoring | scored | failed
    public_score: Mapped[float | None] = mapped_column(Float)
    private_score: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    # False when scoring failed for the service's reasons: it does not count against the daily limit.
    counts: Mapped[bool] = mapped_column(Boolean, default=True)
    selected: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    scored_at: Mapped[datetime | None]


class Worker(Base):
    """A running worker process, as its last heartbeat described it."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    queues: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    concurrency: Mapped[int] = mapped_column(Integer)
    gpu_name: Mapped[str | None] = mapped_column(String(255))
    gpu_memory_mb: Mapped[int | None] = mapped_column(Integer)
    gpu_utilization: Mapped[int | None] = mapped_column(Integer)  # percent, at the last heartbeat
    gpu_memory_used_mb: Mapped[int | None] = mapped_column(Integer)
    # What it can run beyond the built-in families: {"sandbox": how} or {"sandbox_error": why not}.
    capabilities: Mapped[dict[str, Any] | None]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    def serves(self, queue: str) -> bool:
        return queue in self.queues.split(",")

    @property
    def has_gpu(self) -> bool:
        return self.serves("gpu")


class DispatchLock(Base):
    """One row; a dispatcher updates it first in each round, so two dispatchers take turns."""

    __tablename__ = "dispatch_lock"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(255))
    taken_at: Mapped[datetime | None]


class SlurmAllocation(Base):
    """A SLURM job that may run more than one labtrain job in turn (a queue's
    `jobs_per_allocation`): after each job it waits briefly for the dispatcher to hand it the
    next one of the same shape, so small jobs stop paying a SLURM start and a Python start each
    (service/slurm/allocations.py)."""

    __tablename__ = "slurm_allocations"

    slurm_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    queue: Mapped[str] = mapped_column(String(64))
    # What its sbatch options ask besides the job's name, output and time: a job it takes asks the same.
    shape: Mapped[str] = mapped_column(Text)
    # busy (running, or handed, a job), idle (waiting for the next), ended (takes no more).
    state: Mapped[str] = mapped_column(String(16), default="busy")
    jobs_run: Mapped[int] = mapped_column(Integer, default=0)
    max_jobs: Mapped[int] = mapped_column(Integer)
    wait_s: Mapped[float] = mapped_column(Float)
    ends_at: Mapped[datetime | None]  # its --time's end, known once it starts on its node
    updated_at: Mapped[datetime | None]


class AuditEntry(Base):
    """Who changed what outside a job (limits, users), and when."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class TrackingExperiment(Base):
    """An MLflow experiment: a user's own (names unique per owner), or one of the two every user
    shares (owner None: "0" Default and "1" labtrain-jobs, made by the migration)."""

    __tablename__ = "tracking_experiments"
    __table_args__ = (UniqueConstraint("owner_id", "name", name="uq_tracking_experiments_owner_name"),)

    id: Mapped[int] = mapped_column(Integer, Identity(start=2), primary_key=True)
    owner_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(500))
    lifecycle_stage: Mapped[str] = mapped_column(String(16), default="active")  # active | deleted
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrackingRun(Base):
    """An MLflow run that is not a job (a laptop's, or one a job created under its own run), or
    what a job's run adds to the job (job_id set; id = the job's run id): its experiment,
    whether it was deleted, the params and tags logged to it, the points it holds."""

    __tablename__ = "tracking_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("tracking_experiments.id"), index=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    created_by_job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    course_id: Mapped[str | None] = mapped_column(ForeignKey("courses.id"), index=True)
    name: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="RUNNING")  # MLflow's RunStatus names
    start_time: Mapped[int] = mapped_column(BigInteger)  # milliseconds since the epoch, as MLflow's
    end_time: Mapped[int | None] = mapped_column(BigInteger)
    lifecycle_stage: Mapped[str] = mapped_column(String(16), default="active")  # active | deleted
    points: Mapped[int] = mapped_column(BigInteger, default=0)  # metric points logged, against the cap
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrackingParam(Base):
    __tablename__ = "tracking_params"

    run_id: Mapped[str] = mapped_column(ForeignKey("tracking_runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class TrackingTag(Base):
    __tablename__ = "tracking_tags"

    run_id: Mapped[str] = mapped_column(ForeignKey("tracking_runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class TrackingMetric(Base):
    """A metric point of a run that is not a job (a job's points are its `metrics` events)."""

    __tablename__ = "tracking_metrics"
    __table_args__ = (Index("ix_tracking_metrics_run_key_step", "run_id", "key", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("tracking_runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(250))
    value: Mapped[float] = mapped_column(NanFloat, nullable=True)  # NULL is NaN
    timestamp: Mapped[int] = mapped_column(BigInteger)
    step: Mapped[int] = mapped_column(BigInteger)


class TrackingLoggedModel(Base):
    """An MLflow 3 logged model: the run it was logged from (run_id; a job's run's row for a job)
    decides who reads and changes it, as for that run; without a run, only its owner. Its files
    are kept with that run's artifacts (service/tracking/artifacts.py), never loaded by labtrain."""

    __tablename__ = "tracking_logged_models"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # m-<32 hex>, as MLflow's
    experiment_id: Mapped[int] = mapped_column(ForeignKey("tracking_experiments.id"), index=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("tracking_runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(Text)
    model_type: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(40))  # MLflow's LoggedModelStatus names
    status_message: Mapped[str | None] = mapped_column(Text)
    lifecycle_stage: Mapped[str] = mapped_column(String(16), default="active")  # active | deleted
    output_step: Mapped[int | None] = mapped_column(BigInteger)  # its run's output (LogOutputs), at this step
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[list[Any]] = mapped_column(default=list)  # the latest point per key and dataset
    creation_time: Mapped[int] = mapped_column(BigInteger)  # milliseconds since the epoch, as MLflow's
    last_updated_time: Mapped[int] = mapped_column(BigInteger)


class TrackingRunInput(Base):
    """A run's input, as MLflow's LogInputs keeps it: a data set (key: its name and digest) or a
    logged model (key: its id); `data` MLflow's message as JSON."""

    __tablename__ = "tracking_run_inputs"
    __table_args__ = (UniqueConstraint("run_id", "kind", "key", name="uq_tracking_run_inputs_run_kind_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("tracking_runs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # dataset | model
    key: Mapped[str] = mapped_column(String(600))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
