"""Where files live under the artifact directory, and the safe model format.

Models are written with skops, which rebuilds objects without running pickled code;
on load only scikit-learn and numpy types are trusted (DESIGN.md decision 7).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from service.config import Settings


def job_dir(settings: Settings, job_id: str) -> Path:
    return settings.artifact_dir / "jobs" / job_id


def job_log_path(settings: Settings, job_id: str) -> Path:
    return job_dir(settings, job_id) / "job.log"


def dataset_path(settings: Settings, dataset_id: str, kind: str) -> Path:
    return settings.artifact_dir / "datasets" / f"{dataset_id}.{kind}"


def model_path(settings: Settings, model_id: str, suffix: str) -> Path:
    return settings.artifact_dir / "models" / f"{model_id}{suffix}"


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary name and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


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
