"""A run's artifact files on disk, reached only through folder descriptors.

A path a client names is hostile: `..`, absolute parts, backslashes, NULs and control
characters are refused before anything is opened. Each folder on the way is then opened
through its parent's descriptor without following a link, so a link anywhere (planted by a
job in its outputs, or swapped in meanwhile) is refused, never followed. A file is written
under a temporary name in its folder and renamed over its name once complete: no write goes
through a link and no reader sees half a file. Bodies are streamed in chunks, never held whole.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote

CHUNK = 1024 * 1024
MAX_DEPTH = 64  # folders in one artifact path
MAX_NAME_BYTES = 255  # one component, as the filesystem allows
TEMP_NAME = re.compile(r"^\..*\.[0-9a-f]{16}\.part$")  # a file being written (hidden from listings)
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(ValueError):
    """A path that could lead elsewhere, or that no file can have; the message says why."""


class NotAFolder(UnsafePath):
    """A file where the path needs a folder."""


class Missing(LookupError):
    """Nothing (or no file, for a download) at the path."""


class TooLarge(Exception):
    """The body went past what the run may still hold."""

    def __init__(self, allowance: int):
        super().__init__(allowance)
        self.allowance = allowance


@dataclass(frozen=True)
class Entry:
    name: str
    is_dir: bool
    size: int | None  # None for a folder


def split_path(path: str) -> list[str]:
    """The components of a client's relative path ("" is the root), or UnsafePath. Empty
    components (a doubled or trailing slash) are dropped, as a file system would."""
    if any(ord(char) < 32 or ord(char) == 127 for char in path):
        raise UnsafePath("the path holds a NUL or another control character")
    if "\\" in path:
        raise UnsafePath("the path holds a backslash; separate folders with /")
    if path.startswith("/"):
        raise UnsafePath("the path is absolute; name it relative to the run's artifacts")
    parts = [part for part in path.split("/") if part]
    # Also as another hop would decode it (a proxy that unquotes once more), not only as sent.
    decoded = unquote(unquote(path))
    if any(part in (".", "..") for part in parts + decoded.replace("\\", "/").split("/")):
        raise UnsafePath("the path holds a . or .. component; name files below the run's artifacts")
    if len(parts) > MAX_DEPTH:
        raise UnsafePath(f"the path is more than {MAX_DEPTH} folders deep")
    if any(len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for part in parts):
        raise UnsafePath(f"a name in the path is longer than {MAX_NAME_BYTES} bytes")
    return parts


class RunFolder:
    """One run's artifacts: the folder `base` (a relative path of trusted names) under `anchor`
    (the artifact directory), made when first written to."""

    def __init__(self, anchor: Path, base: tuple[str, ...]):
        self.anchor, self.base = anchor, base

    @contextmanager
    def _folder(self, parts: list[str], create: bool) -> Iterator[int]:
        """A descriptor of the folder base/parts, each step opened without following a link."""
        fd = os.open(self.anchor, DIR_FLAGS & ~os.O_NOFOLLOW)  # the admin's own folder: it may be a link
        try:
            for index, part in enumerate((*self.base, *parts)):
                try:
                    child = os.open(part, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise Missing(part) from None
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                    except FileExistsError:  # made meanwhile (or a link appeared): open it again
                        pass
                    child = _open_step(part, fd, parts, index - len(self.base))
                except OSError as exc:
                    raise _step_error(exc, fd, part, parts, index - len(self.base)) from None
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    def size_of(self, parts: list[str]) -> int:
        """The size of the regular file at `parts` (0 when there is none)."""
        if not parts:
            return 0
        try:
            with self._folder(parts[:-1], create=False) as folder:
                info = os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)
        except (Missing, UnsafePath, FileNotFoundError, NotADirectoryError):
            return 0
        return info.st_size if stat.S_ISREG(info.st_mode) else 0

    def write(self, parts: list[str], body: BinaryIO, allowance: int) -> int:
        """The body, streamed to the file at `parts` (replacing the file there); its size.
        TooLarge once more than `allowance` bytes arrived (nothing is kept)."""
        if not parts:
            raise UnsafePath("name a file to upload, below the run's artifacts")
        name = parts[-1]
        with self._folder(parts[:-1], create=True) as folder:
            _refuse_link_or_folder(folder, name, parts)
            temp = f".{name[:200]}.{secrets.token_hex(8)}.part"
            fd = os.open(
                temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=folder
            )
            written = 0
            try:
                with os.fdopen(fd, "wb") as out:
                    while chunk := body.read(CHUNK):
                        written += len(chunk)
                        if written > allowance:
                            raise TooLarge(allowance)
                        out.write(chunk)
                _refuse_link_or_folder(folder, name, parts)
                try:
                    os.replace(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
                except (IsADirectoryError, NotADirectoryError):  # a folder appeared there meanwhile
                    raise UnsafePath(f"{'/'.join(parts)} is a folder; upload to a file's name") from None
            except BaseException:
                with suppress(FileNotFoundError):
                    os.unlink(temp, dir_fd=folder)
                raise
        return written

    def open(self, parts: list[str]) -> tuple[BinaryIO, int]:
        """The regular file at `parts`, open for reading, and its size; Missing for anything else."""
        if not parts:
            raise Missing("")
        with self._folder(parts[:-1], create=False) as folder:
            try:
                fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
            except FileNotFoundError:
                raise Missing(parts[-1]) from None
            except OSError as exc:
                raise _step_error(exc, folder, parts[-1], parts, len(parts) - 1) from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise Missing(parts[-1])
        return os.fdopen(fd, "rb"), info.st_size

    def list(self, parts: list[str]) -> list[Entry]:
        """The folder's regular files and folders, by name; [] for a file or nothing there
        (as MLflow's own stores answer). Links, pipes and files being written are left out."""
        try:
            with self._folder(parts, create=False) as folder:
                entries = []
                for name in sorted(os.listdir(folder)):
                    try:
                        info = os.stat(name, dir_fd=folder, follow_symlinks=False)
                    except FileNotFoundError:  # gone meanwhile
                        continue
                    if stat.S_ISDIR(info.st_mode):
                        entries.append(Entry(name, True, None))
                    elif stat.S_ISREG(info.st_mode) and not TEMP_NAME.match(name):
                        entries.append(Entry(name, False, info.st_size))
                return entries
        except (Missing, NotAFolder):
            return []

    def delete(self, parts: list[str]) -> None:
        """The file or folder at `parts` (all of the run's artifacts for none) removed; nothing
        there is no error. A link is removed itself, never what it points to."""
        if not parts:
            try:
                with self._folder([], create=False) as folder:
                    for name in os.listdir(folder):
                        _remove(folder, name)
            except Missing:
                pass
            return
        try:
            with self._folder(parts[:-1], create=False) as folder:
                _remove(folder, parts[-1])
        except Missing:
            pass


def _open_step(part: str, parent: int, parts: list[str], index: int) -> int:
    try:
        return os.open(part, DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        raise _step_error(exc, parent, part, parts, index) from None


def _step_error(exc: OSError, parent: int, part: str, parts: list[str], index: int) -> Exception:
    """Why a folder on the way could not be opened, naming it in the client's path."""
    where = "/".join(parts[: index + 1]) if index >= 0 else "the run's artifact folder"
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # Linux says ENOTDIR for a link opened as a folder
        try:
            is_link = stat.S_ISLNK(os.stat(part, dir_fd=parent, follow_symlinks=False).st_mode)
        except OSError:
            is_link = exc.errno == errno.ELOOP
        if is_link:
            return UnsafePath(f"{where} is a link; artifacts are never reached through one")
        return NotAFolder(f"{where} is a file, not a folder")
    if exc.errno == errno.ENAMETOOLONG:
        return UnsafePath(f"{where} is too long a name")
    raise exc


def _refuse_link_or_folder(folder: int, name: str, parts: list[str]) -> None:
    try:
        info = os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return
    where = "/".join(parts)
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePath(f"{where} is a link; artifacts are never written through one")
    if not stat.S_ISREG(info.st_mode):
        raise UnsafePath(f"{where} is a folder (or no regular file); upload to a file's name")


def _remove(folder: int, name: str) -> None:
    try:
        info = os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(name, dir_fd=folder)  # descriptor-based: links inside are removed, not followed
    else:
        with suppress(FileNotFoundError):
            os.unlink(name, dir_fd=folder)
