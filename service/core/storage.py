"""Where files live under the artifact directory, and the safe model format.

Models are written with skops, which rebuilds objects without running pickled code; they are
loaded by service/core/sklearn_files.py, with an allowlist of classes (DESIGN.md decision 7).
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


def competition_dir(settings: Settings, competition_id: str) -> Path:
    """A competition's own folder: the predictions files students uploaded."""
    return settings.artifact_dir / "competitions" / competition_id


def job_log_path(settings: Settings, job_id: str) -> Path:
    return job_dir(settings, job_id) / "job.log"


def job_outputs_dir(settings: Settings, job_id: str) -> Path:
    """The files a code job left in its outputs/ folder: its artifacts."""
    return job_dir(settings, job_id) / "outputs"


def mlflow_runs_dir(settings: Settings, owner_id: str) -> Path:
    """The artifacts of a user's MLflow runs that are not jobs, a folder per run id (a job's
    run keeps its artifacts among the job's outputs: mlflow/)."""
    return settings.artifact_dir / "mlflow" / owner_id


def notebook_page_path(settings: Settings, job_id: str) -> Path:
    """A notebook job's page, rendered by its worker after the job ended: beside its outputs,
    never among them, so nothing the job wrote can take its place."""
    return job_dir(settings, job_id) / "notebook.html"


def source_dir(settings: Settings, source_id: str) -> Path:
    return settings.artifact_dir / "sources" / source_id


def dataset_path(settings: Settings, dataset_id: str, kind: str) -> Path:
    return settings.artifact_dir / "datasets" / f"{dataset_id}.{kind}"


def dataset_dir(settings: Settings, dataset_id: str) -> Path:
    """An image-folder data set: its class folders, unpacked (a code job sees it as /data/<id>)."""
    return settings.artifact_dir / "datasets" / dataset_id


def model_path(settings: Settings, model_id: str, suffix: str) -> Path:
    return settings.artifact_dir / "models" / f"{model_id}{suffix}"


def upload_path(settings: Settings, upload_id: str) -> Path:
    """A resumable upload's bytes so far (service/core/uploads.py)."""
    return settings.artifact_dir / "uploads" / f"{upload_id}.part"


def folder_bytes(path: Path) -> int:
    """The bytes of the regular files under `path` (a file: its own size; missing: 0), links not followed."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return 0
    if stat.S_ISREG(info.st_mode):
        return info.st_size
    return sum(size for _relative, size in regular_files(path)) if stat.S_ISDIR(info.st_mode) else 0


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


def dump_sklearn(obj: Any, path: Path) -> None:
    import skops.io

    write_atomically(path, skops.io.dumps(obj))


def regular_files(folder: Path) -> list[tuple[str, int]]:
    """Every regular file under `folder` as (relative path, size), in path order; links and
    special files are passed over, and never followed."""
    return sorted((relative, info.st_size) for relative, info, _, _ in entries(folder) if stat.S_ISREG(info.st_mode))


def entries(folder: Path) -> Iterator[tuple[str, os.stat_result, int, str]]:
    """Every entry under `folder` (files, folders, links, pipes...) as (relative path, its
    lstat, its folder's descriptor, its name), for a caller to act on through that descriptor.

    Safe while someone swaps a folder for a link: `folder` is opened without following a
    link, each folder below through its parent's descriptor and only when it is still the
    folder lstat saw (os.fwalk with follow_symlinks=False), and nothing is named by path."""
    try:
        top = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # missing, or a link
        return
    try:
        for root, dirs, files, root_fd in os.fwalk(".", dir_fd=top, follow_symlinks=False):
            for name in (*dirs, *files):
                try:
                    info = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
                except OSError:  # gone meanwhile
                    continue
                yield os.path.normpath(os.path.join(root, name)), info, root_fd, name
    finally:
        os.close(top)


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
