"""Students' code as uploaded: one `.py` or `.ipynb` file, or a project as `.zip` or `.tar.gz`,
unpacked into the source's own folder.

An archive is read as hostile (service/core/archives.py): absolute names, `..`, links of any kind, devices and pipes
are refused with a 422 that names the entry; the number of files and the bytes they unpack
to are bounded, counted while unpacking (an archive's own sizes are not trusted), so a zip
bomb stops at the bound instead of filling the disk. A project in one top folder (as
zipping a folder makes it) is stored without that folder.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from service.core.archives import ArchiveWriter, as_file, safe_name, untar, unzip
from service.core.errors import SpecError

SKIPPED = ("__MACOSX", ".DS_Store", "__pycache__")  # what archivers add, never the student's code
# What a refusal for size says to do.
ADVICE = "upload the code alone (data sets go to POST /api/v1/datasets)"


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


def unpack(filename: str, data: bytes | BinaryIO, folder: Path, max_files: int, max_bytes: int) -> Unpacked:
    """Store the upload in `folder` (new); a 422 naming what is wrong leaves nothing behind."""
    kind = kind_of(filename)
    folder.mkdir(parents=True)
    try:
        writer = ArchiveWriter(folder, max_files, max_bytes, code=SourceError.code, advice=ADVICE, skip=_skipped)
        if kind in ("py", "ipynb"):
            writer.add(safe_name(PurePosixPath(filename).name, writer), as_file(data))
        elif kind == "zip":
            unzip(data, writer)
        else:
            untar(data, writer)
        if not writer.files:
            raise SourceError("the archive holds no files", field="file")
        if writer.top_folder():
            writer.strip_top_folder()
        return Unpacked(kind, writer.listing(), writer.total)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _skipped(name: PurePosixPath) -> bool:
    return any(part in SKIPPED for part in name.parts)
