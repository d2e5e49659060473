"""Settings read from the environment each time they are asked for (never frozen at import)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _env_int(environ, name: str, default: int) -> int:
    raw = environ.get(name)
    return int(raw) if raw not in (None, "") else default


def _choice(environ, name: str, choices: tuple[str, ...]) -> str:
    """One of `choices` (the first when unset)."""
    raw = (environ.get(name) or choices[0]).strip().lower()
    if raw not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {raw!r}")
    return raw


def _env_float(environ, name: str, default: float) -> float:
    raw = environ.get(name)
    return float(raw) if raw not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    broker_url: str
    data_dir: Path
    artifact_dir: Path
    max_upload_bytes: int = 50 * 1024 * 1024
    # A resumable upload (service/api/uploads.py) arrives in chunks, so it may be far larger.
    max_resumable_upload_bytes: int = 20 * 1024 * 1024 * 1024
    # Redis re-delivers an unacknowledged message after this many seconds, so it must
    # be longer than the longest job we allow (DESIGN.md decision 2).
    visibility_timeout: int = 24 * 3600
    # The serverless broker on a SQLite file: a doorbell wakes its consumer when a message is
    # stored (service/core/doorbell.py), which also looks every embedded_safety_s; where no
    # doorbell can be made, and on any other database, it polls every embedded_poll_interval.
    embedded_poll_interval: float = 0.02
    embedded_safety_s: float = 1.0
    # Models answer predictions from processes of their own (service/serving), kept warm: at
    # most this many per API process, each stopped after predict_idle_s unused.
    model_cache_size: int = 8
    predict_idle_s: float = 900.0
    # What one model's process may use: memory, CPUs, and seconds per prediction (and to load).
    predict_memory_mb: int = 1536
    predict_cpus: float = 1.0
    predict_time_limit_s: float = 10.0
    predict_load_time_limit_s: float = 60.0
    # "auto": a sandbox where this machine can make one, else a plain process with rlimits (and a
    # warning); "required": no prediction without a sandbox (503); "off": plain processes.
    predict_sandbox: str = "auto"
    # Fair share and per-user limits (an admin may override the limits per user).
    usage_half_life_s: float = 24 * 3600
    # The weight of the jobs in no course (the lab's own research) against the courses' shares.
    research_share: float = 1.0
    max_running_cpu: int = 4
    max_running_gpu: int = 1
    max_queued: int = 20
    max_run_time_s: int = 24 * 3600
    # Keeping jobs alive: a running job whose heartbeat is older than this lost its worker.
    job_heartbeat_timeout_s: float = 60.0
    # A job sent to the broker but not taken after this long is sent again (the broker may
    # have lost it, e.g. Redis restarted); a duplicate is harmless.
    resend_after_s: float = 60.0
    # A cancelled or overdue job that has not stopped after this long is killed.
    stop_grace_s: float = 30.0
    # A network job writes a checkpoint at its last epoch and at most this often before it.
    checkpoint_every_s: float = 30.0
    # Tiers and preemption (service/jobs/tiers.py, service/lab/preemption.py): a debug job's
    # longest run, and how long one waits before a running batch job is asked to yield.
    debug_time_limit_s: int = 600
    preempt_after_s: float = 120.0
    # A batch job that waited preempt_after_s may also take the slot of a job whose owner has
    # used this many device-seconds more (fair share's decayed use); 0 turns that off.
    preempt_usage_gap_s: float = 4 * 3600.0
    # GPU memory a job holds on a shared GPU when it does not say (resources.gpu_memory_mb).
    gpu_memory_network_mb: int = 1024
    gpu_memory_code_mb: int = 4096
    gpu_mps: bool = False  # a GPU worker starts NVIDIA MPS (workers/mps.py)
    max_attempts: int = 3
    # On SQLite a doorbell wakes the dispatcher after a commit (service/core/doorbell.py); where
    # no doorbell can be made, it asks this often whether anything was committed (the question
    # reads no table). Either way it runs a round every dispatch_safety_s, which catches what
    # no one announces and any wake-up lost.
    dispatch_interval_s: float = 0.02
    dispatch_safety_s: float = 1.0
    # `labtrain admin prune` removes finished jobs' files after this many days by default.
    retention_days: int = 30
    # A course's jobs, models and data sets are kept this many days after its term_end, then pruned.
    course_retention_days: int = 180
    # Per-user request rates ("30/minute"; empty: no limit) and where they are counted
    # (default: the broker's Redis when it is one, else each process's memory).
    submit_rate_limit: str | None = "120/minute"
    predict_rate_limit: str | None = "1200/minute"
    rate_limit_storage_url: str | None = None
    # A bearer token Prometheus must send for /metrics (empty: /metrics is open).
    metrics_token: str | None = None
    log_format: str = "text"  # or "json": one JSON object a line, with the job id on job lines
    # Modules that register job families of a lab's own, besides the built-in ones.
    extra_families: tuple[str, ...] = ()
    # Students' code (code jobs): uploads, and what a job may ask for. An admin may override
    # max_memory_mb and max_cpus per user, like the other limits.
    max_source_files: int = 2000
    max_source_bytes: int = 200 * 1024 * 1024  # unpacked
    code_memory_mb: int = 2048  # a job's default
    max_memory_mb: int = 8192
    max_cpus: int = 2
    code_max_processes: int = 512
    code_max_open_files: int = 1024  # per process of a code job (RLIMIT_NOFILE)
    max_outputs_mb: int = 512  # the largest file a job may write, and what its outputs/ may hold
    max_job_disk_mb: int = 2048  # all a job may write in its folder
    code_max_files: int = 10_000  # files and folders a job may hold in its folder (inodes)
    tensorboard_max_points: int = 100_000  # TensorBoard scalars (tag, step) one code job's curves take
    tracking_max_points: int = 1_000_000  # MLflow metric points one run may hold (key, step)
    # "required": code runs only in a sandbox (bubblewrap and cgroups); "off": as a plain process,
    # for one person's own machine only (the job and the log say so).
    code_sandbox: str = "required"
    # A code job's own MLflow endpoint (MLFLOW_TRACKING_URI inside it, on a socket of the job's).
    code_tracking: bool = True
    cgroup_root: Path | None = None  # a cgroup subtree delegated to a worker that is not root
    # Image-folder data sets (a zip of class_name/image.png folders): images in one upload, the
    # bytes they unpack to, and the pixels one image may declare (checked before it is decoded).
    max_dataset_images: int = 50_000
    max_dataset_bytes: int = 500 * 1024 * 1024
    max_image_pixels: int = 25_000_000
    # `labtrain datasets fetch` takes each file from <this URL>/<file name> instead of where its
    # publisher put it (a lab's own mirror); empty: the published locations.
    datasets_mirror: str | None = None
    # What one user's files may take (data sets, sources, job folders, models, uploads under way),
    # in MB; an admin may override it per user like the other limits (service/jobs/quota.py).
    storage_quota_mb: int = 20480
    # A resumable upload nobody added to for this long is removed (service/core/uploads.py).
    upload_expiry_h: float = 24.0
    # Queues a SLURM partition serves instead of Celery workers, and named queues beside cpu and
    # gpu: JSON, or a YAML/JSON file's path (service/core/queues.py, service/slurm/queues.py,
    # docs/slurm.md); unset: cpu and gpu on Celery.
    queues: str | None = None
    # slurmrestd instead of SLURM's commands for the SLURM queues: JSON, or a YAML/JSON file's path
    # (service/slurm/rest_config.py, docs/slurm.md); unset: sbatch, squeue, scancel, sinfo.
    slurmrestd: str | None = None

    @property
    def embedded_database(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url.startswith("sqla+")

    @classmethod
    def from_env(cls) -> Settings:
        return cls.from_env_map(os.environ)

    @classmethod
    def from_env_map(cls, environ) -> Settings:
        """Settings from a mapping of environment variables (the process's own by default)."""
        home = Path(environ.get("LABTRAIN_HOME") or Path.home() / ".labtrain").expanduser()
        data_dir = Path(environ.get("LABTRAIN_DATA_DIR") or home / "datasets").expanduser()
        artifact_dir = Path(environ.get("LABTRAIN_ARTIFACT_DIR") or home / "artifacts").expanduser()
        return cls(
            home=home,
            database_url=environ.get("LABTRAIN_DATABASE_URL") or f"sqlite:///{home / 'labtrain.db'}",
            broker_url=environ.get("LABTRAIN_BROKER_URL") or f"sqla+sqlite:///{home / 'broker.db'}",
            data_dir=data_dir,
            artifact_dir=artifact_dir,
            max_upload_bytes=_env_int(environ, "LABTRAIN_MAX_UPLOAD_BYTES", 50 * 1024 * 1024),
            max_resumable_upload_bytes=_env_int(
                environ, "LABTRAIN_MAX_RESUMABLE_UPLOAD_BYTES", 20 * 1024 * 1024 * 1024
            ),
            visibility_timeout=_env_int(environ, "LABTRAIN_VISIBILITY_TIMEOUT", 24 * 3600),
            embedded_poll_interval=_env_float(environ, "LABTRAIN_EMBEDDED_POLL_INTERVAL", 0.02),
            embedded_safety_s=_env_float(environ, "LABTRAIN_EMBEDDED_SAFETY_S", 1.0),
            model_cache_size=_env_int(environ, "LABTRAIN_MODEL_CACHE_SIZE", 8),
            predict_idle_s=_env_float(environ, "LABTRAIN_PREDICT_IDLE_S", 900.0),
            predict_memory_mb=_env_int(environ, "LABTRAIN_PREDICT_MEMORY_MB", 1536),
            predict_cpus=_env_float(environ, "LABTRAIN_PREDICT_CPUS", 1.0),
            predict_time_limit_s=_env_float(environ, "LABTRAIN_PREDICT_TIME_LIMIT_S", 10.0),
            predict_load_time_limit_s=_env_float(environ, "LABTRAIN_PREDICT_LOAD_TIME_LIMIT_S", 60.0),
            predict_sandbox=_choice(environ, "LABTRAIN_PREDICT_SANDBOX", ("auto", "required", "off")),
            usage_half_life_s=_env_float(environ, "LABTRAIN_USAGE_HALF_LIFE_S", 24 * 3600),
            research_share=_env_float(environ, "LABTRAIN_RESEARCH_SHARE", 1.0),
            max_running_cpu=_env_int(environ, "LABTRAIN_MAX_RUNNING_CPU", 4),
            max_running_gpu=_env_int(environ, "LABTRAIN_MAX_RUNNING_GPU", 1),
            max_queued=_env_int(environ, "LABTRAIN_MAX_QUEUED", 20),
            max_run_time_s=_env_int(environ, "LABTRAIN_MAX_RUN_TIME_S", 24 * 3600),
            job_heartbeat_timeout_s=_env_float(environ, "LABTRAIN_JOB_HEARTBEAT_TIMEOUT_S", 60.0),
            resend_after_s=_env_float(environ, "LABTRAIN_RESEND_AFTER_S", 60.0),
            stop_grace_s=_env_float(environ, "LABTRAIN_STOP_GRACE_S", 30.0),
            checkpoint_every_s=_env_float(environ, "LABTRAIN_CHECKPOINT_EVERY_S", 30.0),
            debug_time_limit_s=_env_int(environ, "LABTRAIN_DEBUG_TIME_LIMIT_S", 600),
            preempt_after_s=_env_float(environ, "LABTRAIN_PREEMPT_AFTER_S", 120.0),
            preempt_usage_gap_s=_env_float(environ, "LABTRAIN_PREEMPT_USAGE_GAP_S", 4 * 3600.0),
            gpu_memory_network_mb=_env_int(environ, "LABTRAIN_GPU_MEMORY_NETWORK_MB", 1024),
            gpu_memory_code_mb=_env_int(environ, "LABTRAIN_GPU_MEMORY_CODE_MB", 4096),
            gpu_mps=environ.get("LABTRAIN_GPU_MPS", "") in ("1", "true", "yes"),
            max_attempts=_env_int(environ, "LABTRAIN_MAX_ATTEMPTS", 3),
            dispatch_interval_s=_env_float(environ, "LABTRAIN_DISPATCH_INTERVAL_S", 0.02),
            dispatch_safety_s=_env_float(environ, "LABTRAIN_DISPATCH_SAFETY_S", 1.0),
            retention_days=_env_int(environ, "LABTRAIN_RETENTION_DAYS", 30),
            course_retention_days=_env_int(environ, "LABTRAIN_COURSE_RETENTION_DAYS", 180),
            submit_rate_limit=environ.get("LABTRAIN_SUBMIT_RATE_LIMIT", "120/minute") or None,
            predict_rate_limit=environ.get("LABTRAIN_PREDICT_RATE_LIMIT", "1200/minute") or None,
            rate_limit_storage_url=environ.get("LABTRAIN_RATE_LIMIT_STORAGE_URL") or None,
            metrics_token=environ.get("LABTRAIN_METRICS_TOKEN") or None,
            log_format="json" if environ.get("LABTRAIN_LOG_FORMAT", "").lower() == "json" else "text",
            extra_families=tuple(m.strip() for m in environ.get("LABTRAIN_FAMILIES", "").split(",") if m.strip()),
            max_source_files=_env_int(environ, "LABTRAIN_MAX_SOURCE_FILES", 2000),
            max_source_bytes=_env_int(environ, "LABTRAIN_MAX_SOURCE_BYTES", 200 * 1024 * 1024),
            code_memory_mb=_env_int(environ, "LABTRAIN_CODE_MEMORY_MB", 2048),
            max_memory_mb=_env_int(environ, "LABTRAIN_MAX_MEMORY_MB", 8192),
            max_cpus=_env_int(environ, "LABTRAIN_MAX_CPUS", 2),
            code_max_processes=_env_int(environ, "LABTRAIN_CODE_MAX_PROCESSES", 512),
            code_max_open_files=_env_int(environ, "LABTRAIN_CODE_MAX_OPEN_FILES", 1024),
            max_outputs_mb=_env_int(environ, "LABTRAIN_MAX_OUTPUTS_MB", 512),
            max_job_disk_mb=_env_int(environ, "LABTRAIN_MAX_JOB_DISK_MB", 2048),
            code_max_files=_env_int(environ, "LABTRAIN_CODE_MAX_FILES", 10_000),
            tensorboard_max_points=_env_int(environ, "LABTRAIN_TENSORBOARD_MAX_POINTS", 100_000),
            tracking_max_points=_env_int(environ, "LABTRAIN_TRACKING_MAX_POINTS", 1_000_000),
            code_sandbox="off" if environ.get("LABTRAIN_CODE_SANDBOX", "").lower() == "off" else "required",
            code_tracking=_choice(environ, "LABTRAIN_CODE_TRACKING", ("on", "off")) == "on",
            cgroup_root=Path(environ["LABTRAIN_CGROUP_ROOT"]) if environ.get("LABTRAIN_CGROUP_ROOT") else None,
            max_dataset_images=_env_int(environ, "LABTRAIN_MAX_DATASET_IMAGES", 50_000),
            max_dataset_bytes=_env_int(environ, "LABTRAIN_MAX_DATASET_BYTES", 500 * 1024 * 1024),
            max_image_pixels=_env_int(environ, "LABTRAIN_MAX_IMAGE_PIXELS", 25_000_000),
            datasets_mirror=environ.get("LABTRAIN_DATASETS_MIRROR") or None,
            storage_quota_mb=_env_int(environ, "LABTRAIN_STORAGE_QUOTA_MB", 20480),
            upload_expiry_h=_env_float(environ, "LABTRAIN_UPLOAD_EXPIRY_H", 24.0),
            queues=environ.get("LABTRAIN_QUEUES") or None,
            slurmrestd=environ.get("LABTRAIN_SLURMRESTD") or None,
        )

    def ensure_dirs(self) -> None:
        for path in (self.home, self.data_dir, self.artifact_dir):
            path.mkdir(parents=True, exist_ok=True)
