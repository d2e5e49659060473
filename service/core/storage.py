"""Where files live under the artifact directory, and the safe model format.

Models are written with skops, which rebuilds objects without running pickled code;
on load only scikit-learn and numpy types are trusted (DESIGN.md decision 7).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from service.core.config import Settings


def job_dir(settings: Settings, job_id: str) -> Path:
    return settings.artifact_dir / "jobs" / job_id


def job_log_path(settings: Settings, job_id: str) -> Path:
    return job_dir(settings, job_id) / "job.log"


def dataset_path(settings: Settings, dataset_id: str, kind: str) -> Path:
    return settings.artifact_dir / "datasets" / f"{dataset_id}.{kind}"


def model_path(settings: Settings, model_id: str, suffix: str) -> Path:
    return settings.artifact_dir / "models" / f"{model_id}{suffix}"


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name beside `path` to write to; renamed to `path` once the writing succeeded,
    so a reader never sees half a file. It keeps the suffix (Keras picks its format by it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomically(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


TRUSTED_PREFIXES = ("sklearn.", "numpy.")


def dump_sklearn(obj: Any, path: Path) -> None:
    import skops.io

    write_atomically(path, skops.io.dumps(obj))


def load_sklearn(path: str | Path) -> Any:
    import skops.io

    path = Path(path)
    data = path.read_bytes()
    untrusted = skops.io.get_untrusted_types(data=data)
    foreign = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
    if foreign:
        raise ValueError(f"model file {path.name} holds types outside scikit-learn and numpy: {foreign}")
    return skops.io.loads(data, trusted=untrusted)
