"""The queues jobs wait in: cpu and gpu always, and the named ones an admin adds in LABTRAIN_QUEUES,
each served by Celery workers (started with `--queues NAME`) or by a SLURM partition.

LABTRAIN_QUEUES is JSON, or the path of a YAML or JSON file, mapping a queue to its entry:

    {"a100": {"backend": "slurm", "partition": "gpu-a100", "device": "gpu", "max": {"cpus": 8}},
     "bigmem": {"backend": "celery", "max": {"memory_mb": 64000}, "max_running": 1}}

The keys every queue takes are read here (backend, device, max, max_running, description); a SLURM
queue's own keys (partition, depth, qos, ...) by service/slurm/queues.py. Every mistake is a
ValueError naming the key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from service.core.config import Settings

BUILTIN = ("cpu", "gpu")  # the queues a job goes to when its spec names none (service/lab/devices.py)
BACKENDS = ("celery", "slurm")
DEVICES = ("cpu", "gpu")
COMMON_KEYS = frozenset({"backend", "device", "max", "max_running", "description"})
LIMIT_KEYS = ("cpus", "memory_mb", "time_limit_s")
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-")
MAX_NAME = 16  # Job.queue's column


@dataclass(frozen=True)
class Limits:
    """The largest resources one job of the queue may ask for (a 422 past them)."""

    cpus: int | None = None
    memory_mb: int | None = None
    time_limit_s: int | None = None

    def as_dict(self) -> dict[str, int]:
        return {key: getattr(self, key) for key in LIMIT_KEYS if getattr(self, key) is not None}


@dataclass(frozen=True)
class QueueConfig:
    name: str
    backend: str = "celery"
    device: str = "cpu"  # what its jobs run on: a GPU queue's jobs hold a GPU and spend GPU-hours
    max: Limits = Limits()
    # Running jobs per user on this queue; None: the user's max_running_<device>.
    max_running: int | None = None
    description: str | None = None
    # The entry as written, for the backend's own keys (service/slurm/queues.py).
    entry: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def catalog(settings: Settings) -> dict[str, QueueConfig]:
    """Every queue of the deployment by name, cpu and gpu first."""
    return load(settings.queues)


def load(raw: str | None) -> dict[str, QueueConfig]:
    return _parse(_text(raw))


def device_of(settings: Settings, queue: str) -> str:
    """cpu or gpu: what a job of `queue` runs on (a queue no longer configured: by its name)."""
    config = catalog(settings).get(queue)
    return config.device if config else ("gpu" if queue == "gpu" else "cpu")


def _text(raw: str | None) -> str:
    text = (raw or "").strip()
    if not text or text.startswith(("{", "[")):
        return text
    path = Path(text).expanduser()
    if not path.is_file():
        raise ValueError(f"LABTRAIN_QUEUES is neither JSON nor the path of a file: {text!r} does not exist")
    return path.read_text()


@lru_cache(maxsize=16)
def _parse(text: str) -> dict[str, QueueConfig]:
    data = _data(text) if text else {}
    if not isinstance(data, dict):
        raise ValueError("LABTRAIN_QUEUES must map queue names to their entries")
    queues = {name: QueueConfig(name, device=name) for name in BUILTIN}
    for name, entry in data.items():
        queues[name] = _entry(name, entry)
    return queues


def _data(text: str) -> Any:
    try:
        return json.loads(text) if text.startswith(("{", "[")) else yaml.safe_load(text)  # YAML holds JSON
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"LABTRAIN_QUEUES is not valid JSON or YAML: {exc}") from None


def _entry(name: Any, entry: Any) -> QueueConfig:
    where = f"LABTRAIN_QUEUES.{name}"
    if not isinstance(name, str) or not name or not set(name) <= NAME_CHARS or len(name) > MAX_NAME:
        raise ValueError(f"{where}: a queue name is up to {MAX_NAME} lower-case letters, digits, - or _")
    if name.startswith("worker."):
        raise ValueError(f"{where}: worker.* names are the workers' own queues")
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be an object with a backend")
    backend = entry.get("backend")
    if backend not in BACKENDS:
        raise ValueError(f"{where}.backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "celery" and set(entry) - COMMON_KEYS:
        unknown = ", ".join(sorted(set(entry) - COMMON_KEYS))
        raise ValueError(
            f"{where}: a celery queue takes no other keys than {', '.join(sorted(COMMON_KEYS))} ({unknown})"
        )
    device = entry.get("device", name if name in BUILTIN else "cpu")
    if device not in DEVICES:
        raise ValueError(f"{where}.device must be cpu or gpu, not {device!r}")
    if name in BUILTIN and device != name:
        raise ValueError(f"{where}.device: the {name} queue's jobs run on the {name}")
    max_running = entry.get("max_running")
    if max_running is not None and (
        isinstance(max_running, bool) or not isinstance(max_running, int) or max_running < 0
    ):
        raise ValueError(f"{where}.max_running must be a whole number of at least 0")
    description = entry.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 200):
        raise ValueError(f"{where}.description must be text of at most 200 characters")
    return QueueConfig(
        name=name,
        backend=backend,
        device=device,
        max=limits(entry.get("max", {}), f"{where}.max"),
        max_running=max_running,
        description=description,
        entry=dict(entry),
    )


def limits(raw: Any, where: str) -> Limits:
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be an object ({', '.join(LIMIT_KEYS)})")
    unknown = set(raw) - set(LIMIT_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(LIMIT_KEYS)})")
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{where}.{key} must be a whole number above 0")
    return Limits(**raw)
