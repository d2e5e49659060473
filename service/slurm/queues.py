"""LABTRAIN_QUEUES: the queues a SLURM partition serves instead of Celery workers, and how.

The catalog of queues (service/core/queues.py) reads what every queue takes (backend, device, max,
max_running); this reads a SLURM queue's own keys:

    {"cpu": {"backend": "slurm", "partition": "debug", "depth": 4,
             "qos": {"debug": "short", "batch": "normal"}, "accounts": {"ML 101": "ml101"},
             "max": {"cpus": 8, "memory_mb": 16000, "time_limit_s": 86400}},
     "a100": {"backend": "slurm", "partition": "gpu-a100", "device": "gpu"}}

Queues not named, and those whose backend is celery, stay on Celery. Every mistake is a
ValueError naming the key, raised when the dispatcher starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from service.core import queues as catalog
from service.core.queues import Limits, QueueConfig

BACKENDS = catalog.BACKENDS
GPU_KINDS = ("gpu", "shard")
# The partition's worker row is renewed at each poll: more than this and it would go offline between two.
MAX_SECONDS = {"poll_s": 10.0, "command_timeout_s": 300.0, "allocation_wait_s": 300.0}

__all__ = ["Limits", "SlurmQueue", "load"]


@dataclass(frozen=True)
class SlurmQueue:
    queue: str
    partition: str
    # Jobs labtrain keeps submitted and not yet started there: what the partition can start soon.
    depth: int = 4
    qos: dict[str, str] = field(default_factory=dict)  # tier -> QOS
    accounts: dict[str, str] = field(default_factory=dict)  # course name -> account
    default_account: str | None = None  # for jobs of no course, or of a course not mapped
    max: Limits = Limits()
    cpus: int = 1  # what a job gets when its spec does not say
    memory_mb: int = 2048
    # A GPU job asks for one whole GPU (gres gpu), or for shards of one (gres shard), each shard_mb.
    gpu: str = "gpu"
    shard_mb: int = 1024
    # SLURM signals the job this long before its --time ends, and on preemption: it yields.
    signal_grace_s: int = 60
    # The command the node runs for `labtrain` (the dispatcher's own Python when not given).
    command: tuple[str, ...] = ()
    # Set in the job's environment besides the deployment's LABTRAIN_* settings (paths on the nodes).
    environment: dict[str, str] = field(default_factory=dict)
    # How the nodes run code jobs (what the worker registry says): a bubblewrap sandbox, or none.
    sandbox: str | None = None
    poll_s: float = 5.0  # how often the dispatcher asks SLURM about its jobs
    command_timeout_s: float = 20.0  # one sbatch/squeue/scancel call
    device: str = "cpu"  # cpu or gpu: a GPU queue's jobs ask for a gres (the catalog's device)
    # How many jobs one SLURM job may run in turn (service/slurm/allocations.py): 1, one SLURM
    # job per labtrain job; more, a SLURM job that ends its job waits up to allocation_wait_s for
    # the next of the same resources, and asks --time for allocation_reuse_s more than its first.
    jobs_per_allocation: int = 1
    allocation_wait_s: float = 5.0
    allocation_reuse_s: int = 600

    @property
    def worker_name(self) -> str:
        """Its row in the worker registry."""
        return f"slurm:{self.partition}"

    @property
    def reuses_allocations(self) -> bool:
        return self.jobs_per_allocation > 1

    @property
    def has_gpu(self) -> bool:
        return self.device == "gpu" or self.queue == "gpu"  # the gpu queue's device is always gpu

    def account_for(self, course_name: str | None) -> str | None:
        return self.accounts.get(course_name, self.default_account) if course_name else self.default_account

    def shards(self, gpu_memory_mb: int | None) -> int:
        return max(1, math.ceil((gpu_memory_mb or self.shard_mb) / self.shard_mb))


def load(raw: str | None) -> dict[str, SlurmQueue]:
    """The SLURM queues LABTRAIN_QUEUES names (empty when none: every queue on Celery)."""
    queues = {
        name: _slurm_queue(name, config.entry, f"LABTRAIN_QUEUES.{name}", config)
        for name, config in catalog.load(raw).items()
        if config.backend == "slurm"
    }
    partitions = [q.partition for q in queues.values()]
    if len(set(partitions)) != len(partitions):
        raise ValueError("LABTRAIN_QUEUES: two queues name the same partition; give each queue its own")
    return queues


def _slurm_queue(name: str, entry: dict[str, Any], where: str, config: QueueConfig) -> SlurmQueue:
    known = ({f for f in SlurmQueue.__dataclass_fields__} - {"queue"}) | catalog.COMMON_KEYS
    unknown = set(entry) - known
    if unknown:
        raise ValueError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(known))})")
    partition = entry.get("partition")
    if not isinstance(partition, str) or not _slurm_word(partition):
        raise ValueError(f"{where}.partition must name the SLURM partition (letters, digits, - _ .)")
    values: dict[str, Any] = {"queue": name, "partition": partition, "device": config.device, "max": config.max}
    for key in (
        "depth",
        "cpus",
        "memory_mb",
        "shard_mb",
        "signal_grace_s",
        "jobs_per_allocation",
        "allocation_reuse_s",
    ):
        if key in entry:
            allow_zero = key in ("signal_grace_s", "allocation_reuse_s")
            values[key] = _positive_int(entry[key], f"{where}.{key}", allow_zero=allow_zero)
    for key in ("poll_s", "command_timeout_s", "allocation_wait_s"):
        if key in entry:
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_SECONDS[key]:
                raise ValueError(f"{where}.{key} must be a number of seconds above 0, at most {MAX_SECONDS[key]}")
            values[key] = float(value)
    for key in ("qos", "accounts", "environment"):
        if key in entry:
            values[key] = _string_map(entry[key], f"{where}.{key}", words=key != "environment")
    if set(values.get("qos", {})) - {"debug", "batch"}:
        raise ValueError(f"{where}.qos maps the tiers debug and batch to a QOS, not {sorted(values['qos'])}")
    for env_name in values.get("environment", {}):
        if not env_name.replace("_", "").isalnum() or not env_name[0].isalpha() or not env_name.isupper():
            raise ValueError(f"{where}.environment: {env_name!r} is not an environment variable's name")
    if "default_account" in entry:
        account = entry["default_account"]
        if not isinstance(account, str) or not _slurm_word(account):
            raise ValueError(f"{where}.default_account must be a SLURM account's name")
        values["default_account"] = account
    if "gpu" in entry:
        if entry["gpu"] not in GPU_KINDS:
            raise ValueError(f"{where}.gpu must be one of {', '.join(GPU_KINDS)}")
        values["gpu"] = entry["gpu"]
    if "sandbox" in entry:
        if entry["sandbox"] not in (None, "bubblewrap"):
            raise ValueError(f"{where}.sandbox is bubblewrap (the nodes can run code jobs) or null")
        values["sandbox"] = entry["sandbox"]
    if "command" in entry:
        command = entry["command"]
        if not isinstance(command, list) or not command or not all(isinstance(p, str) and p for p in command):
            raise ValueError(f'{where}.command must be a list of words, e.g. ["/opt/labtrain/bin/labtrain"]')
        values["command"] = tuple(command)
    return SlurmQueue(**values)


def _positive_int(value: Any, where: str, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        raise ValueError(f"{where} must be a whole number {'of at least 0' if allow_zero else 'above 0'}")
    return value


def _string_map(raw: Any, where: str, words: bool) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise ValueError(f"{where} must map names to strings")
    if words:
        bad = [v for v in raw.values() if not _slurm_word(v)]
        if bad:
            raise ValueError(f"{where}: {bad[0]!r} is not a SLURM name (letters, digits, - _ .)")
    return dict(raw)


def _slurm_word(value: str) -> bool:
    """A partition, account or QOS name: nothing a command line or SLURM's own syntax could misread."""
    return 0 < len(value) <= 64 and all(c.isalnum() or c in "-_." for c in value) and value[0] != "-"
