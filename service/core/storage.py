"""Where files live under the artifact directory, and the safe model format.

Models are written with skops, which rebuilds objects without running pickled code;
on load only scikit-learn and numpy types are trusted (DESIGN.md decision 7).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from service.core.config import Settings


def job_dir(settings: Settings, job_id: str) -> Path:
    return settings.artifact_dir / "jobs" / job_id


def job_log_path(settings: Settings, job_id: str) -> Path:
    return job_dir(settings, job_id) / "job.log"


def job_outputs_dir(settings: Settings, job_id: str) -> Path:
    """The files a code job left in its outputs/ folder: its artifacts."""
    return job_dir(settings, job_id) / "outputs"


def source_dir(settings: Settings, source_id: str) -> Path:
    return settings.artifact_dir / "sources" / source_id


def dataset_path(settings: Settings, dataset_id: str, kind: str) -> Path:
    return settings.artifact_dir / "datasets" / f"{dataset_id}.{kind}"


def dataset_dir(settings: Settings, dataset_id: str) -> Path:
    """An image-folder data set: its class folders, unpacked (a code job sees it as /data/<id>)."""
    return settings.artifact_dir / "datasets" / dataset_id


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


def regular_files(folder: Path) -> list[tuple[str, int]]:
    """Every regular file under `folder` as (relative path, size), in path order; links and
    special files are passed over, and never followed."""
    found = []
    if not folder.is_dir() or folder.is_symlink():
        return found
    for root, dirs, files in os.walk(folder):  # os.walk does not follow links to folders
        dirs[:] = [d for d in dirs if not (Path(root) / d).is_symlink()]
        for name in files:
            path = Path(root) / name
            info = path.lstat()
            if stat.S_ISREG(info.st_mode):
                found.append((path.relative_to(folder).as_posix(), info.st_size))
    return sorted(found)


def file_inside(folder: Path, relative: str) -> Path | None:
    """`folder`/`relative` when that is a regular file inside `folder` reached through no link,
    else None: what a user names cannot lead anywhere else."""
    parts = Path(relative).parts
    if not parts or Path(relative).is_absolute() or any(part in ("..", "") for part in parts):
        return None
    path = folder
    for part in parts:
        path = path / part
        if path.is_symlink():
            return None
    return path if path.is_file() and not path.is_symlink() else None
