"""Students' code as uploaded: one `.py` or `.ipynb` file, or a project as `.zip` or `.tar.gz`,
unpacked into the source's own folder.

An archive is read as hostile: absolute names, `..`, links of any kind, devices and pipes
are refused with a 422 that names the entry; the number of files and the bytes they unpack
to are bounded, counted while unpacking (an archive's own sizes are not trusted), so a zip
bomb stops at the bound instead of filling the disk. A project in one top folder (as
zipping a folder makes it) is stored without that folder.
"""

from __future__ import annotations

import io
import shutil
import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from service.core.errors import SpecError

CHUNK = 1024 * 1024
MAX_NAME = 255
MAX_PATH = 1024
SKIPPED = ("__MACOSX", ".DS_Store", "__pycache__")  # what archivers add, never the student's code


@dataclass
class Unpacked:
    kind: str  # py | ipynb | zip | tar.gz
    files: list[dict[str, int | str]]  # [{"path", "size"}], in path order
    size: int


class SourceError(SpecError):
    code = "invalid_source"


def kind_of(filename: str) -> str:
    name = filename.lower()
    for suffix, kind in (
        (".py", "py"),
        (".ipynb", "ipynb"),
        (".zip", "zip"),
        (".tar.gz", "tar.gz"),
        (".tgz", "tar.gz"),
    ):
        if name.endswith(suffix):
            return kind
    raise SourceError(
        f"{filename!r} is not code labtrain runs; upload a .py or .ipynb file, or a project as .zip or .tar.gz",
        field="file",
    )


def unpack(filename: str, data: bytes, folder: Path, max_files: int, max_bytes: int) -> Unpacked:
    """Store the upload in `folder` (new); a 422 naming what is wrong leaves nothing behind."""
    kind = kind_of(filename)
    folder.mkdir(parents=True)
    try:
        writer = _Writer(folder, max_files, max_bytes)
        if kind in ("py", "ipynb"):
            writer.add(_safe_name(PurePosixPath(filename).name), io.BytesIO(data))
        elif kind == "zip":
            _unzip(data, writer)
        else:
            _untar(data, writer)
        if not writer.files:
            raise SourceError("the archive holds no files", field="file")
        writer.strip_single_folder()
        return Unpacked(kind, writer.listing(), writer.total)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


class _Writer:
    """Writes files into the folder, counting files and bytes as they come."""

    def __init__(self, folder: Path, max_files: int, max_bytes: int):
        self.folder, self.max_files, self.max_bytes = folder, max_files, max_bytes
        self.files: dict[str, int] = {}
        self.total = 0

    def add(self, name: PurePosixPath, stream: IO[bytes]) -> None:
        if any(part in SKIPPED for part in name.parts):
            return
        key = name.as_posix()
        if key in self.files:
            raise SourceError(f"the archive holds {key} twice", field="file")
        if len(self.files) >= self.max_files:
            raise SourceError(
                f"the archive holds more than {self.max_files} files; upload the code alone "
                "(data sets go to POST /api/v1/datasets)",
                field="file",
                status=413,
            )
        target = self.folder.joinpath(*name.parts)
        size = 0
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            out = open(target, "xb")  # noqa: SIM115 (x: never over a file or through a link; closed below)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            raise SourceError(f"{key} is both a file and a folder in the archive", field="file") from None
        with out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if self.total + size > self.max_bytes:
                    raise SourceError(
                        f"the code unpacks to more than {self.max_bytes} bytes; upload the code "
                        "alone (data sets go to POST /api/v1/datasets)",
                        field="file",
                        status=413,
                    )
                out.write(chunk)
        self.files[key] = size
        self.total += size

    def strip_single_folder(self) -> None:
        tops = {PurePosixPath(path).parts[0] for path in self.files}
        if len(tops) != 1 or all(len(PurePosixPath(path).parts) == 1 for path in self.files):
            return
        top = tops.pop()
        inner = self.folder / top
        for child in list(inner.iterdir()):
            child.rename(self.folder / child.name)
        inner.rmdir()
        self.files = {path.split("/", 1)[1]: size for path, size in self.files.items()}

    def listing(self) -> list[dict[str, int | str]]:
        return [{"path": path, "size": size} for path, size in sorted(self.files.items())]


def _safe_name(name: str) -> PurePosixPath:
    """An archive entry's name as a relative path that stays in the folder, or a 422 naming it."""
    shown = name[:200]
    if "\x00" in name or any(ord(c) < 32 for c in name) or "\\" in name:
        raise SourceError(
            f"the archive entry {shown!r} has a name with control characters or backslashes", field="file"
        )
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("/"):
        raise SourceError(
            f"the archive entry {shown!r} has an absolute path; archive the project from inside its folder",
            field="file",
        )
    if ".." in path.parts:
        raise SourceError(f"the archive entry {shown!r} climbs out of the project with ..", field="file")
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or len(name) > MAX_PATH or any(len(p) > MAX_NAME for p in parts):
        raise SourceError(f"the archive entry {shown!r} has an empty or overlong name", field="file")
    return PurePosixPath(*parts)


def _unzip(data: bytes, writer: _Writer) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise SourceError(f"the file is not a readable zip archive ({exc})", field="file") from None
    with archive:
        entries = archive.infolist()
        if len(entries) > writer.max_files * 2:
            raise SourceError(
                f"the archive holds {len(entries)} entries, over the limit of {writer.max_files} files",
                field="file",
                status=413,
            )
        declared = sum(entry.file_size for entry in entries)
        if declared > writer.max_bytes:  # refused before a byte is unpacked; the count while unpacking stays
            raise SourceError(
                f"the archive says it unpacks to {declared} bytes, over the limit of {writer.max_bytes}",
                field="file",
                status=413,
            )
        for entry in entries:
            name = _safe_name(entry.filename)
            kind = stat.S_IFMT(entry.external_attr >> 16)  # 0 where the archiver stored no file type
            if kind == stat.S_IFLNK:
                raise SourceError(
                    f"the archive entry {entry.filename!r} is a link; archives may not hold links "
                    "(put the file itself in)",
                    field="file",
                )
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise SourceError(f"the archive entry {entry.filename!r} is not a file or a folder", field="file")
            if entry.is_dir():
                continue
            try:
                with archive.open(entry) as stream:
                    writer.add(name, stream)
            except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as exc:  # corrupt, or encrypted
                raise SourceError(
                    f"the archive entry {entry.filename!r} cannot be read ({exc})", field="file"
                ) from None


def _untar(data: bytes, writer: _Writer) -> None:
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")  # noqa: SIM115 (closed below)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise SourceError(f"the file is not a readable .tar.gz archive ({exc})", field="file") from None
    with archive:
        try:
            for member in archive:  # streamed: members are read as they come
                name = _safe_name(member.name)
                if member.issym() or member.islnk():
                    raise SourceError(
                        f"the archive entry {member.name!r} is a link; archives may not hold links "
                        "(put the file itself in)",
                        field="file",
                    )
                if member.isdir():
                    continue
                if not member.isfile():
                    raise SourceError(
                        f"the archive entry {member.name!r} is not a file or a folder (a device or a pipe)",
                        field="file",
                    )
                stream = archive.extractfile(member)
                writer.add(name, stream)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise SourceError(f"the archive cannot be read to its end ({exc})", field="file") from None
