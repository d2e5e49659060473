"""Unpacking an uploaded archive (zip or .tar.gz) as hostile, for every kind of upload that
comes as one (students' code, image-folder data sets).

Absolute names, `..`, backslashes, links of any kind, devices and pipes are refused with a
422 that names the entry. The number of files and the bytes they unpack to are bounded: a
zip's declared sizes are checked before a byte is written, and the bytes are counted again
while unpacking (an archive's own sizes are not trusted), so a bomb stops at the bound
(a 413) instead of filling the disk. What to skip (what archivers add) is the caller's call.
"""

from __future__ import annotations

import io
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

from service.core.errors import SpecError

CHUNK = 1024 * 1024
MAX_NAME = 255
MAX_PATH = 1024


class ArchiveWriter:
    """Writes an archive's files into `folder`, counting files and bytes as they come.

    `code` is the error code of a refusal; `advice` ends a message about a limit (how to stay
    within it); `skip` says which entries to pass over without a word."""

    def __init__(
        self,
        folder: Path,
        max_files: int,
        max_bytes: int,
        *,
        code: str,
        advice: str,
        skip: Callable[[PurePosixPath], bool] = lambda _name: False,
    ):
        self.folder, self.max_files, self.max_bytes = folder, max_files, max_bytes
        self.code, self.advice, self.skip = code, advice, skip
        self.files: dict[str, int] = {}  # path -> size, as in the archive
        self.folders: set[str] = set()  # the folders the archive names as entries of their own
        self.total = 0

    def refuse(self, message: str, status: int | None = None) -> SpecError:
        return SpecError(message, field="file", code=self.code, status=status)

    def add(self, name: PurePosixPath, stream: IO[bytes]) -> None:
        if self.skip(name):
            return
        key = name.as_posix()
        if key in self.files:
            raise self.refuse(f"the archive holds {key} twice")
        if len(self.files) >= self.max_files:
            raise self.refuse(f"the archive holds more than {self.max_files} files; {self.advice}", status=413)
        target = self.folder.joinpath(*name.parts)
        size = 0
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            out = open(target, "xb")  # noqa: SIM115 (x: never over a file or through a link; closed below)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            raise self.refuse(f"{key} is both a file and a folder in the archive") from None
        with out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if self.total + size > self.max_bytes:
                    raise self.refuse(
                        f"the archive unpacks to more than {self.max_bytes} bytes; {self.advice}", status=413
                    )
                out.write(chunk)
        self.files[key] = size
        self.total += size

    def add_folder(self, name: PurePosixPath) -> None:
        """A folder entry: remembered (an empty one may matter to the caller), never created."""
        if not self.skip(name):
            self.folders.add(name.as_posix())

    def top_folder(self) -> str | None:
        """The one folder that holds every file (as zipping a folder makes it), if there is one."""
        tops = {PurePosixPath(path).parts[0] for path in self.files}
        if len(tops) != 1 or any(len(PurePosixPath(path).parts) == 1 for path in self.files):
            return None
        return tops.pop()

    def strip_top_folder(self) -> None:
        """Move what the top folder holds up one level, and drop it."""
        top = self.top_folder()
        aside = Path(tempfile.mkdtemp(dir=self.folder))  # the top folder may hold a folder of its own name
        (self.folder / top).rename(aside / top)
        for child in list((aside / top).iterdir()):
            child.rename(self.folder / child.name)
        (aside / top).rmdir()
        aside.rmdir()
        self.files = {path.split("/", 1)[1]: size for path, size in self.files.items()}
        self.folders = {path.split("/", 1)[1] for path in self.folders if "/" in path}

    def listing(self) -> list[dict[str, int | str]]:
        return [{"path": path, "size": size} for path, size in sorted(self.files.items())]


def safe_name(name: str, writer: ArchiveWriter) -> PurePosixPath:
    """An archive entry's name as a relative path that stays in the folder, or a 422 naming it."""
    shown = name[:200]
    if "\x00" in name or any(ord(c) < 32 for c in name) or "\\" in name:
        raise writer.refuse(f"the archive entry {shown!r} has a name with control characters or backslashes")
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("/"):
        raise writer.refuse(
            f"the archive entry {shown!r} has an absolute path; make the archive from inside its folder"
        )
    if ".." in path.parts:
        raise writer.refuse(f"the archive entry {shown!r} climbs out of its folder with ..")
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or len(name) > MAX_PATH or any(len(p.encode()) > MAX_NAME for p in parts):
        raise writer.refuse(f"the archive entry {shown!r} has an empty or overlong name")
    return PurePosixPath(*parts)


def _link_refused(name: str, writer: ArchiveWriter) -> SpecError:
    return writer.refuse(f"the archive entry {name!r} is a link; archives may not hold links (put the file itself in)")


def as_file(data: bytes | BinaryIO) -> BinaryIO:
    """Bytes as a file; a file as it is (an upload on disk is read as a stream, never whole)."""
    return io.BytesIO(data) if isinstance(data, bytes | bytearray) else data


def unzip(data: bytes | BinaryIO, writer: ArchiveWriter) -> None:
    try:
        archive = zipfile.ZipFile(as_file(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise writer.refuse(f"the file is not a readable zip archive ({exc})") from None
    with archive:
        entries = archive.infolist()
        if len(entries) > writer.max_files * 2:
            raise writer.refuse(
                f"the archive holds {len(entries)} entries, over the limit of {writer.max_files} files; "
                f"{writer.advice}",
                status=413,
            )
        declared = sum(entry.file_size for entry in entries)
        if declared > writer.max_bytes:  # refused before a byte is unpacked; the count while unpacking stays
            raise writer.refuse(
                f"the archive says it unpacks to {declared} bytes, over the limit of {writer.max_bytes}; "
                f"{writer.advice}",
                status=413,
            )
        for entry in entries:
            name = safe_name(entry.filename, writer)
            kind = stat.S_IFMT(entry.external_attr >> 16)  # 0 where the archiver stored no file type
            if kind == stat.S_IFLNK:
                raise _link_refused(entry.filename, writer)
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise writer.refuse(f"the archive entry {entry.filename!r} is not a file or a folder (a device?)")
            if entry.is_dir():
                writer.add_folder(name)
                continue
            try:
                with archive.open(entry) as stream:
                    writer.add(name, stream)
            except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as exc:  # corrupt, or encrypted
                raise writer.refuse(f"the archive entry {entry.filename!r} cannot be read ({exc})") from None


def untar(data: bytes | BinaryIO, writer: ArchiveWriter) -> None:
    try:
        archive = tarfile.open(fileobj=as_file(data), mode="r:gz")  # noqa: SIM115 (closed below)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise writer.refuse(f"the file is not a readable .tar.gz archive ({exc})") from None
    with archive:
        try:
            for member in archive:  # streamed: members are read as they come
                name = safe_name(member.name, writer)
                if member.issym() or member.islnk():
                    raise _link_refused(member.name, writer)
                if member.isdir():
                    writer.add_folder(name)
                    continue
                if not member.isfile():
                    raise writer.refuse(
                        f"the archive entry {member.name!r} is not a file or a folder (a device or a pipe)"
                    )
                writer.add(name, archive.extractfile(member))
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise writer.refuse(f"the archive cannot be read to its end ({exc})") from None
