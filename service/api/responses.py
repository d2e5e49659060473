"""The shapes of the API's answers, for the OpenAPI document.

They describe what service/api/serialize.py and the routes return; the schemathesis test
checks real answers against them. Every model allows extra fields: API.md lets fields be
added, so a new field must not make old clients (or this document) wrong.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.jobs.lifecycle import STATUSES

Time = str  # ISO-8601 UTC, e.g. 2025-01-31T12:00:00.123456Z


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorBody(Open):
    code: str = Field(description="short_snake_case, e.g. invalid_spec, not_found, unauthorized")
    message: str = Field(description="What is wrong and how to fix it")
    details: dict[str, Any] = Field(description="details.field names the offending field, where there is one")


class Error(Open):
    """Every 4xx and 5xx answer."""

    error: ErrorBody


class JobFailure(Open):
    code: str | None
    message: str


class Job(Open):
    id: str
    name: str | None
    owner: str
    status: Literal[STATUSES]  # type: ignore[valid-type]
    family: str = Field(description="The job family: classic, network, optimize, search (or a lab's own)")
    spec: dict[str, Any] = Field(description="The submitted spec, normalized and completed with defaults")
    queue: str = Field(description="cpu, gpu or a queue an admin added (GET /api/v1/queue)")
    position: int | None = Field(description="Place in its queue (1 = next) while queued, else null")
    waiting: dict[str, str] | None = Field(
        None,
        description='Why a queued job is not sent yet: {"reason": "budget" (its course budget) or '
        '"queue_not_configured" (its queue was removed), "message"}; else null',
    )
    estimated_start: Time | None = Field(
        None,
        description="GET /jobs/<id> of a queued job: when it may start (its place, the queue's slots and recent "
        "run times; SLURM's planned start once submitted there); null when unknown. Absent from listings.",
    )
    progress: dict[str, Any]
    metrics: dict[str, Any] | None
    result: dict[str, Any] | None = Field(
        description="model_id; for searches and optimisation jobs best_value, best_params, evaluations, curve, trials"
    )
    error: JobFailure | None
    parent_id: str | None = Field(description="The search job this job is a trial of")
    trial_number: int | None
    attempt: int
    cancel_requested: bool
    course: str | None = Field(description="The course it was submitted for; null for none")
    created_at: Time
    started_at: Time | None
    finished_at: Time | None


class JobList(Open):
    items: list[Job]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page")


class Event(Open):
    seq: int
    time: Time
    type: str = Field(description="epoch, log, trial or status")
    data: dict[str, Any]


class EventList(Open):
    items: list[Event]


class CancelAnswer(Open):
    id: str
    status: Literal[STATUSES]  # type: ignore[valid-type]
    cancel_requested: bool


class TrainedModel(Open):
    id: str
    job_id: str
    framework: str = Field(description="sklearn, tensorflow or pytorch; onnx for a model from students' code")
    algorithm: str | None
    task: str
    input: dict[str, Any] = Field(description="features (tables) or shape (arrays and images)")
    classes: list[Any] | None
    class_names: list[Any] | None
    metrics: dict[str, Any]
    summary: str | None
    parameters: Any = None
    device: Any = None
    format: str | None = Field(None, description="A model from students' code: onnx or skops")
    trained_with: str | None = Field(None, description="A model from students' code: pytorch, tensorflow or sklearn")
    picture: dict[str, Any] | None = Field(
        None,
        description="An ONNX model that takes pictures: {size: [height, width], channels, digits}; digits "
        "means pictures are read as MNIST digits (found, centred, x / 255.0)",
    )
    created_at: Time


class ModelList(Open):
    items: list[TrainedModel]


class Prediction(Open):
    model_id: str
    predictions: list[Any]
    probabilities: list[list[float]] | None = Field(None, description="Classifiers only")
    labels: list[Any] | None = Field(None, description="Class names, where the data set has them")


class DatasetInfo(Open):
    """A built-in (builtin true) or an uploaded data set; tables have columns, arrays a shape."""

    id: str
    name: str
    builtin: bool
    kind: str = Field(description="table or images (built-ins); csv, npz or images (an image-folder zip) (uploads)")
    rows: int = Field(description="Rows, or images")
    task: str | None = None
    columns: list[Any] | None = None
    target: str | None = None
    shape: list[int] | None = Field(None, description="A network's input: [height, width, channels] for images")
    classes: list[Any] | None = Field(None, description="An image folder's: its class folders' names, sorted")
    has_test: bool | None = None
    class_counts: dict[str, int] | None = Field(None, description="An image folder's: images per class")
    image_size: list[int] | None = Field(None, description="An image folder's most common [height, width]")
    sizes_vary: bool | None = Field(None, description="Whether an image folder's images differ in size")
    color: str | None = Field(None, description="An image folder's: grayscale when every image is, else rgb")
    size_bytes: int | None = None
    created_at: Time | None = None
    course: str | None = Field(None, description='The course that published it: specs name it {"course", "name"}')
    # A built-in's state on this server (docs/datasets.md).
    label: str | None = Field(
        None, description="How jobs and the dashboard name it: mnist (subset: ...) while the subset serves"
    )
    installed: bool | None = Field(None, description="A built-in: whether jobs can use it here")
    subset: bool | None = Field(
        None, description="A built-in: whether the subset that ships with labtrain is installed"
    )
    how: str | None = Field(None, description="A built-in: the command or route that installs it (null: nothing to do)")
    download_bytes: int | None = Field(None, description="A built-in the server fetches: the bytes its download takes")
    download: dict[str, Any] | None = Field(
        None,
        description="A built-in's last fetch: state (running, done, failed, interrupted), done_bytes, total_bytes, error",
    )


class DatasetList(Open):
    items: list[DatasetInfo]


class Catalog(Open):
    families: list[dict[str, Any]] = Field(
        description="Each kind of job: its name (a job's family), the spec key that selects it, a title, "
        "and the section of this catalog that describes it"
    )
    algorithms: list[dict[str, Any]]
    networks: dict[str, Any]
    optimize: dict[str, Any]
    search: dict[str, Any]
    code: dict[str, Any] | None = Field(None, description="Code jobs: resources, their defaults and limits")


class SourceFile(Open):
    path: str
    size: int


class SourceInfo(Open):
    id: str
    name: str
    kind: str = Field(description="py, ipynb, zip or tar.gz")
    files: list[SourceFile]
    size: int = Field(description="Bytes, unpacked")
    created_at: Time


class SourceList(Open):
    items: list[SourceInfo]


class Artifact(Open):
    path: str
    size: int


class ArtifactList(Open):
    items: list[Artifact]


class Gpu(Open):
    name: str
    memory_mb: int | None


class WorkerInfo(Open):
    name: str
    host: str
    concurrency: int
    gpu: Gpu | None
    heartbeat_at: Time


class QueueLimits(Open):
    cpus: int | None = None
    memory_mb: int | None = None
    time_limit_s: int | None = None


class QueueState(Open):
    queued: int
    running: int
    workers: list[WorkerInfo]
    backend: Literal["celery", "slurm"] = Field(description="Who runs its jobs: Celery workers or a SLURM partition")
    device: Literal["cpu", "gpu"] = Field(description="What its jobs run on")
    partition: str | None = Field(description="The SLURM partition that serves it; null on Celery")
    max: QueueLimits = Field(description="The most one job may ask for here (resources past it: a 422)")
    max_running: int | None = Field(description="The queue's own running jobs per user; null: by its device")
    your_max_running: int = Field(description="How many of your jobs may run here at once")
    description: str | None


class QueuedJob(Open):
    id: str
    name: str | None
    queue: str
    position: int | None
    waiting: dict[str, str] | None = Field(
        None, description='Why it is not sent yet: {"reason": "budget" or "queue_not_configured", "message"}'
    )
    created_at: Time


class RemovedQueue(Open):
    queued: int = Field(description="Its queued jobs: they wait, never sent, until an admin moves or cancels them")
    running: int = Field(description="Its running jobs: they finish where they run")
    message: str


class QueueOverview(Open):
    queues: dict[str, QueueState]
    not_configured: dict[str, RemovedQueue] = Field(
        default_factory=dict,
        description="Queues an admin removed from the configuration while jobs of them are queued or running",
    )
    your_queued_jobs: list[QueuedJob]


class Health(Open):
    status: str


class Readiness(Open):
    status: str
    checks: dict[str, str] = Field(description="ok, or what failed, per dependency")


class CourseMemberInfo(Open):
    user: str
    role: Literal["instructor", "ta", "student"]


class CourseInfo(Open):
    id: str
    name: str
    term_end: str = Field(description="YYYY-MM-DD: the last day the course takes new jobs")
    closed: bool
    share: float = Field(description="The course's weight against other courses on the lab's queue (fair share)")
    budget: dict[str, Any] | None = Field(
        description="Each student's gpu_hours, cpu_hours, week_gpu_hours for the term; null: unlimited "
        "(a job its budget cannot cover waits queued)"
    )
    role: str | None = Field(description="The highest role the caller holds in it (instructor, ta, student)")
    roles: list[str] = Field(description="Every role the caller holds in it")
    members: list[CourseMemberInfo] | None = Field(None, description="For the course's staff and admins")


class CourseList(Open):
    items: list[CourseInfo]


class CreatedUser(Open):
    id: str
    token: str = Field(description="The new user's token: shown in this answer only")


class RosterAnswer(Open):
    created: list[CreatedUser]
    enrolled: list[str] = Field(description="Every user the roster named, now a student of the course")


class Membership(Open):
    user: str
    course: str
    roles: list[str]


class Hours(Open):
    gpu_hours: float | None
    cpu_hours: float | None


class WeekHours(Open):
    cap: float = Field(description="GPU-hours a student may use per week")
    used: float
    left: float
    resets_at: Time = Field(description="Monday 00:00 UTC: when the week starts again")


class MyQueuedJob(Open):
    id: str
    name: str | None
    queue: str
    position: int | None = Field(description="Place in its queue (1 = next)")
    estimated_start: Time | None = Field(
        description="Position / the queue's worker slots x the median run time of its recent jobs; null: unknown"
    )
    waiting: dict[str, str] | None = Field(
        description='Why it is not sent yet: {"reason": "budget" or "queue_not_configured", "message"}'
    )


class MyCourse(CourseInfo):
    used: Hours = Field(description="Device hours the caller's jobs in this course held, by kind")
    left: Hours = Field(description="The budget plus grants less what was used; null where unlimited")
    granted: Hours | None = Field(description="Hours the instructors granted the caller (students)")
    total: Hours | None = Field(None, description="The budget plus the grants (students)")
    week: WeekHours | None = Field(description="This week's GPU-hours, where the course caps weeks (students)")
    queue: list[MyQueuedJob] = Field(description="The caller's queued jobs in this course")


class StorageUse(Open):
    used_bytes: int = Field(description="What the caller's files take: the sum of by_kind")
    quota_bytes: int = Field(description="What they may take (LABTRAIN_STORAGE_QUOTA_MB, or an admin's override)")
    by_kind: dict[str, int] = Field(
        description="datasets, sources, jobs (finished jobs' folders), models, uploads (under way: their length), "
        "runs (the artifacts of MLflow runs that are not jobs)"
    )


class Me(Open):
    user: str
    admin: bool
    courses: list[MyCourse]
    queue: list[MyQueuedJob] = Field(description="The caller's queued jobs in no course (research)")
    storage: StorageUse | None = Field(None, description="The caller's storage against their quota")


class UploadInfo(Open):
    id: str
    kind: str = Field(description="dataset or source: what it may become")
    filename: str
    length: int = Field(description="Upload-Length: the file's bytes")
    offset: int = Field(description="Bytes received so far")


class StudentBudget(Open):
    budget: dict[str, Any] | None = Field(description="The course's hours per student (null: unlimited)")
    granted: Hours
    total: Hours = Field(description="The budget plus the grants; null where unlimited")
    used: Hours
    left: Hours
    week: WeekHours | None


class StudentUsage(StudentBudget):
    user: str
    name: str | None
    email: str | None
    jobs: int = Field(description="The student's jobs in the course")


class CourseUsage(Open):
    items: list[StudentUsage]


class GrantAnswer(StudentBudget):
    course: str
    user: str


class CompareSeries(Open):
    x: Literal["epoch", "step"] = Field(description="epoch (the job's epoch events) or step (its metrics events)")
    points: list[list[float]] = Field(description="[x, value], x ascending; at most 500, evenly thinned")


class ComparedItem(Open):
    id: str
    kind: Literal["job", "run"] = Field(description="A job, or an MLflow run that is no job")
    name: str | None
    label: str = Field(description="What columns and legends call it: its name (and a trial's number), else its id")
    family: str | None
    owner: str | None
    status: str
    parent_id: str | None = Field(description="The search a trial belongs to")
    trial_number: int | None
    params: dict[str, Any] = Field(description="Its spec flattened with dots: training.learning_rate, algorithm, ...")
    metrics: dict[str, float] = Field(description="Its final metrics, flattened with dots (cv.mean)")
    series: dict[str, CompareSeries] = Field(description="One curve per metric key")
    downsampled: bool = Field(description="Its curves were read from a sample of its many events")
    experiment: str | None = Field(None, description="A run's MLflow experiment (its name); null for a job")


class ComparisonDiff(Open):
    params: list[str]
    metrics: list[str]


class Comparison(Open):
    items: list[ComparedItem]
    params: list[str] = Field(description="Every parameter any item has, in the order they first appear")
    metrics: list[str] = Field(description="Every final metric or curve any item has")
    differ: ComparisonDiff = Field(description="The parameters and metrics whose values are not all the same")
    omitted: int = Field(description="A search's trials left out: past 50, the best of its leaderboard are shown")


class RunExperiment(Open):
    id: str
    name: str


class TrackedRun(Open):
    id: str = Field(description="Its MLflow run id: give it to GET /api/v1/compare beside jobs' ids")
    name: str | None = Field(description="Its mlflow.runName")
    experiment: RunExperiment
    owner: str
    status: str = Field(description="As a job's: running, queued, succeeded, failed, cancelled")
    start_time: Time | None
    end_time: Time | None
    param_count: int
    metric_count: int = Field(description="How many metric keys it has")
    metrics: dict[str, float] = Field(description="Each key's latest value (the first 50 keys by name)")


class RunList(Open):
    items: list[TrackedRun]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page")
