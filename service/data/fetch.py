"""Installing the known data sets (service/data/known.py) into the data directory.

A download streams to `<file>.part` beside its target and, when the connection breaks, goes on
from the part's size with an HTTP Range request (a server that ignores Range sends it all again);
the part is checked against the published digests before anything reads it, then converted and
moved into place atomically, with `<name>.json` beside it saying what was installed. A lab with
a mirror (LABTRAIN_DATASETS_MIRROR) gets each file from `<mirror>/<file name>` instead.

`install_subset` puts the MNIST subset that ships with the package in place on first start, so
`mnist` works on a machine that never reached the internet; fetching the full set replaces it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import pickle
import shutil
import tarfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import requests

from service.core.storage import atomic_path
from service.data.arrays import check_arrays, read_npz
from service.data.known import KNOWN, PACKAGED, Download, KnownDataset
from service.data.tables import DataError

log = logging.getLogger(__name__)
CHUNK = 1 << 16
# What a file that is not what it claims (a checked digest makes that rare) raises while it is read.
UNREADABLE = (ValueError, KeyError, TypeError, IndexError, AttributeError, OSError, EOFError)
# (done bytes, total bytes or None, file name) as a download goes on.
Progress = Callable[[int, int | None, str], None]


class FetchError(Exception):
    """A data set that could not be installed; `code` says which way (offline, checksum_mismatch,
    download_failed, invalid_file, busy, unknown_dataset) and the message what to do."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.message, self.code = message, code


@dataclass
class State:
    """What the data directory holds of a known data set."""

    installed: bool
    subset: bool
    size: int | None  # bytes of the installed file
    path: Path

    def label(self, known: KnownDataset) -> str:
        """How jobs and listings name it: `mnist`, or `mnist (subset: ...)` while the subset serves."""
        return f"{known.name} ({known.subset.note})" if self.subset and known.subset else known.name


def known(name: str) -> KnownDataset:
    if name not in KNOWN:
        raise FetchError(
            f"{name!r} is not a data set this server can fetch; it fetches {', '.join(KNOWN)}", "unknown_dataset"
        )
    return KNOWN[name]


def how_to_install(dataset: KnownDataset) -> str:
    return (
        f"on the server: labtrain datasets fetch {dataset.name} (or, as an admin, "
        f"POST /api/v1/datasets/builtin/{dataset.name}/fetch)"
    )


def from_file_hint(dataset: KnownDataset) -> str:
    """How to install without internet: which files to download elsewhere, and the command."""
    urls = ", ".join(d.url for d in dataset.downloads)
    if len(dataset.downloads) == 1:
        return (
            f"download {urls} on a machine that has internet, copy it here and install it from the file: "
            f"labtrain datasets fetch {dataset.name} --from {dataset.downloads[0].filename}"
        )
    return (
        f"download {urls} on a machine that has internet, copy them into one folder here and install "
        f"them from it: labtrain datasets fetch {dataset.name} --from FOLDER"
    )


def state(dataset: KnownDataset, data_dir: Path) -> State:
    path = Path(data_dir) / dataset.filename
    try:
        size = path.stat().st_size
    except OSError:
        return State(False, False, None, path)
    return State(True, _is_subset(dataset, path, size), size, path)


def _is_subset(dataset: KnownDataset, path: Path, size: int) -> bool:
    if dataset.subset is None:
        return False
    marker = _read_marker(dataset, path.parent)
    if marker.get("size") == size:  # the marker speaks of this very file
        return bool(marker.get("subset"))
    packaged = PACKAGED / dataset.subset.file
    return size == packaged.stat().st_size and _sha256_of(str(path), path.stat().st_mtime_ns) == _packaged_sha256(
        str(packaged)
    )


@lru_cache(maxsize=8)
def _sha256_of(path: str, _mtime_ns: int) -> str:
    return _digests(Path(path), ("sha256",))["sha256"]


@lru_cache(maxsize=4)
def _packaged_sha256(path: str) -> str:
    return _digests(Path(path), ("sha256",))["sha256"]


def _read_marker(dataset: KnownDataset, data_dir: Path) -> dict[str, Any]:
    try:
        marker = json.loads((data_dir / f"{dataset.name}.json").read_text())
    except (OSError, ValueError):
        return {}
    return marker if isinstance(marker, dict) else {}


def _write_marker(dataset: KnownDataset, data_dir: Path, *, subset: bool, source: str) -> None:
    path = data_dir / dataset.filename
    marker = {
        "name": dataset.name,
        "subset": subset,
        "source": source,
        "sha256": _digests(path, ("sha256",))["sha256"],
        "size": path.stat().st_size,
        "installed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with atomic_path(data_dir / f"{dataset.name}.json") as tmp:
        tmp.write_text(json.dumps(marker, indent=2) + "\n")


# ---------------------------------------------------------------- the subset


def install_subset(data_dir: Path) -> list[str]:
    """On first start: each known data set that ships a subset and is not installed gets it.
    Safe to run from several processes at once, and never over a file already there."""
    installed = []
    for dataset in KNOWN.values():
        target = Path(data_dir) / dataset.filename
        if dataset.subset is None or target.exists():
            continue
        tmp = target.with_name(f".{dataset.name}.subset.{os.getpid()}.tmp")
        try:
            shutil.copyfile(PACKAGED / dataset.subset.file, tmp)
            os.link(tmp, target)  # fails if the file appeared meanwhile (another process, a fetch)
        except FileExistsError:
            continue
        except OSError as exc:  # a data directory this process may only read: the service still starts
            log.warning("the %s subset could not be installed in %s: %s", dataset.name, data_dir, exc)
            continue
        finally:
            tmp.unlink(missing_ok=True)
        _write_marker(dataset, Path(data_dir), subset=True, source=f"package: {dataset.subset.file}")
        installed.append(dataset.name)
    return installed


# ---------------------------------------------------------------- fetching


def fetch(
    name: str,
    data_dir: Path,
    *,
    mirror: str | None = None,
    source: Path | None = None,
    force: bool = False,
    progress: Progress | None = None,
    attempts: int = 5,
    pause_s: float = 1.0,
    claimed: bool = False,
) -> State:
    """Install `name` from its published location (or `mirror`), or from the local `source` (the
    file, or a folder holding the files by their published names), checked against the published
    digests. A full set already installed stays unless `force`. `claimed`: the caller holds the
    data set's claim (the API takes it before its thread starts)."""
    dataset = known(name)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    held = None if claimed else Claim(dataset, data_dir)
    try:
        current = state(dataset, data_dir)
        if current.installed and not current.subset and not force:
            return current
        files = []
        for download in dataset.downloads:
            if source is not None:
                path = _local_file(dataset, download, Path(source))
            else:
                path = data_dir / f"{download.filename}.part"
                url = _url(download, mirror)
                _download(url, path, progress or _quiet, dataset, attempts, pause_s)
            _check(path, download, remove=source is None)
            files.append(path)
        origin = f"file: {Path(source).resolve()}" if source is not None else _url(dataset.downloads[0], mirror)
        _install(dataset, files, data_dir, origin, move=source is None)
    finally:
        if held is not None:
            held.release()
    return state(dataset, data_dir)


def _quiet(_done: int, _total: int | None, _file: str) -> None:
    pass


def _url(download: Download, mirror: str | None) -> str:
    return f"{mirror.rstrip('/')}/{download.filename}" if mirror else download.url


class Claim:
    """The right to install one data set, held across processes (the CLI and every API process)
    with a lock on `.<name>.lock` in the data directory until `release`."""

    def __init__(self, dataset: KnownDataset, data_dir: Path):
        self.handle = open(Path(data_dir) / f".{dataset.name}.lock", "w")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            raise FetchError(f"{dataset.name} is being installed already; wait for it to end", "busy") from None

    def release(self) -> None:
        self.handle.close()


def claim(name: str, data_dir: Path) -> Claim:
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    return Claim(known(name), data_dir)


def running(dataset: KnownDataset, data_dir: Path) -> bool:
    """Whether some process installs `dataset` now (holds its claim)."""
    try:
        Claim(dataset, data_dir).release()
    except FetchError:
        return True
    except OSError:  # a data directory this process cannot write: it installs nothing either
        return False
    return False


class Tracker:
    """A fetch's progress in `.<name>.fetch.json` beside the data set, for every process to read;
    written at most every `every_s` seconds while bytes arrive."""

    def __init__(self, dataset: KnownDataset, data_dir: Path, every_s: float = 0.5):
        self.path = Path(data_dir) / f".{dataset.name}.fetch.json"
        self.every_s, self.last = every_s, 0.0
        self.view: dict[str, Any] = {
            "state": "running",
            "file": None,
            "done_bytes": 0,
            "total_bytes": None,
            "error": None,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self._write()

    def __call__(self, done: int, total: int | None, file: str) -> None:
        self.view.update(file=file, done_bytes=done, total_bytes=total)
        if time.monotonic() - self.last >= self.every_s or done == total:
            self._write()

    def finish(self, error: FetchError | None) -> None:
        self.view.update(
            state="failed" if error else "done", error=error and {"code": error.code, "message": error.message}
        )
        self._write()

    def _write(self) -> None:
        self.last = time.monotonic()
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.view))


def progress_of(dataset: KnownDataset, data_dir: Path) -> dict[str, Any] | None:
    """The last fetch's progress (running, done, failed, or interrupted: its process ended), or None."""
    try:
        view = json.loads((Path(data_dir) / f".{dataset.name}.fetch.json").read_text())
    except (OSError, ValueError):
        return None
    if view.get("state") == "running" and not running(dataset, data_dir):
        view["state"] = "interrupted"
    return view


def _local_file(dataset: KnownDataset, download: Download, source: Path) -> Path:
    path = source / download.filename if source.is_dir() else source
    if len(dataset.downloads) > 1 and not source.is_dir():
        raise FetchError(
            f"{dataset.name} is {len(dataset.downloads)} files; put "
            f"{', '.join(d.filename for d in dataset.downloads)} in one folder and name the folder in --from",
            "invalid_file",
        )
    if not path.is_file():
        raise FetchError(f"there is no file {path}; {from_file_hint(dataset)}", "invalid_file")
    return path


def _download(url: str, part: Path, progress: Progress, dataset: KnownDataset, attempts: int, pause_s: float) -> None:
    """`url` into `part`, going on from what `part` holds; retried after a broken connection."""
    problem = ""
    for attempt in range(attempts):
        if attempt:
            time.sleep(pause_s * attempt)
        have = part.stat().st_size if part.exists() else 0
        try:
            response = requests.get(
                url, headers={"Range": f"bytes={have}-"} if have else {}, stream=True, timeout=(15, 60)
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            if attempt == 0:  # no answer at all: no route, no name, nothing listening
                raise FetchError(
                    f"cannot reach {url} ({_reason(exc)}). Without internet, {from_file_hint(dataset)}", "offline"
                ) from None
            problem = f"{url} stopped answering ({_reason(exc)})"
            continue
        with response:
            if response.status_code == 416 and have:  # nothing after `have`: whole, or not this file
                if response.headers.get("Content-Range", "").rpartition("/")[2] == str(have):
                    return
                part.unlink()
                continue
            if response.status_code >= 400:
                problem = f"{url} answered HTTP {response.status_code}"
                if response.status_code < 500:
                    break
                continue
            resumed = have > 0 and response.status_code == 206
            done = have if resumed else 0  # a 200 to a Range request: the server sends it all again
            length = response.headers.get("Content-Length", "")
            total = done + int(length) if length.isdigit() else None
            try:
                with part.open("ab" if resumed else "wb") as out:
                    for chunk in response.iter_content(CHUNK):
                        out.write(chunk)
                        done += len(chunk)
                        progress(done, total, part.name.removesuffix(".part"))
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                problem = f"the download from {url} broke ({_reason(exc)})"
                continue
            if total is None or done >= total:
                return
            problem = f"the connection to {url} closed after {done} of {total} bytes"
    kept = part.stat().st_size if part.exists() else 0
    resume = f"{kept} bytes are kept in {part}: run the command again to go on from there, or " if kept else ""
    raise FetchError(f"{problem}; {resume}{from_file_hint(dataset)}", "download_failed")


def _reason(exc: Exception) -> str:
    text = str(exc)
    for known_reason in ("Name or service not known", "Temporary failure in name resolution", "Connection refused"):
        if known_reason in text:
            return known_reason.lower()
    return type(exc).__name__


def _digests(path: Path, names: tuple[str, ...] | list[str]) -> dict[str, str]:
    hashes = {name: hashlib.new(name, usedforsecurity=False) for name in names}
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            for digest in hashes.values():
                digest.update(chunk)
    return {name: digest.hexdigest() for name, digest in hashes.items()}


def _check(path: Path, download: Download, remove: bool) -> None:
    """The file against every digest published for it; a downloaded file that fails is removed."""
    actual = _digests(path, list(download.digests))
    wrong = [name for name, expected in download.digests.items() if actual[name] != expected]
    if wrong:
        if remove:
            path.unlink(missing_ok=True)
        name = wrong[0]
        raise FetchError(
            f"{path.name.removesuffix('.part')} is not the published file: its {name} is {actual[name]}, "
            f"the published {name} is {download.digests[name]}" + ("; the download was removed" if remove else ""),
            "checksum_mismatch",
        )


def _install(dataset: KnownDataset, files: list[Path], data_dir: Path, origin: str, move: bool) -> None:
    target = data_dir / dataset.filename
    try:
        arrays = read_npz(files[0]) if dataset.convert is None else dataset.convert(files)
        info = check_arrays(arrays)
    except (*UNREADABLE, DataError, tarfile.TarError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
        raise FetchError(f"the files of {dataset.name} could not be read ({exc})", "invalid_file") from None
    if tuple(info["input_shape"]) != dataset.shape:
        raise FetchError(
            f"{dataset.name}'s images are {info['input_shape']}, not {list(dataset.shape)}", "invalid_file"
        )
    if dataset.convert is None and move:
        os.replace(files[0], target)
    elif dataset.convert is None:
        with atomic_path(target) as tmp:
            shutil.copyfile(files[0], tmp)
    else:
        with atomic_path(target) as tmp:
            np.savez_compressed(tmp, **arrays)
    _write_marker(dataset, data_dir, subset=False, source=origin)
    if move:
        for path in files:
            path.unlink(missing_ok=True)
