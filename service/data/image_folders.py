"""Image-folder data sets: a zip of `class_name/image.png` folders (PNG, JPEG or BMP), one
folder per class, optionally inside one top folder (as zipping a folder makes it).

At upload the zip is unpacked as hostile (service/core/archives.py) into the data set's own
folder, then every image's header is read with Pillow: a file that is not a PNG, JPEG or BMP
(whatever its name says), or that declares more pixels than the limit, is refused naming the
entry; nothing is decoded there. What archivers and file browsers add (`__MACOSX/`,
`Thumbs.db`, `desktop.ini`, and hidden files and folders such as `.DS_Store`) is skipped
without a word. A refusal leaves nothing on disk.

A worker decodes the images when a network job trains on them, each resized to the size and
colour the job names with the same function that prepares a picture sent to predict
(service/data/images.py `picture`), so the model sees the same input in both.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from service.core import storage
from service.core.archives import ArchiveWriter, unzip
from service.core.errors import SpecError
from service.data.arrays import MAX_CLASSES
from service.data.images import FORMATS, MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, ImageError, picture
from service.data.tasks import CLASSIFICATION

IMAGE_FOLDER = "images"  # the data set's kind
CODE = "invalid_dataset"
JUNK = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
COLORS = ("rgb", "grayscale")
CHANNELS = {"rgb": 3, "grayscale": 1}
# Pillow modes with one grey channel (and maybe alpha); a palette may hold colours.
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
DEFAULT_SIDE = 64  # a network's default input: the common size, its longest side at most this
MAX_SIDE = 512  # the longest side a network job may ask for
MAX_ARRAY_BYTES = 2 * 1024**3  # all images at the asked size, as the worker holds them (uint8)


@dataclass(frozen=True)
class FolderLimits:
    max_images: int
    max_bytes: int  # unpacked
    max_pixels: int  # per image, as its header declares


def unpack_image_folder(data: bytes | BinaryIO, folder: Path, limits: FolderLimits) -> dict[str, Any]:
    """Unpack the zip into `folder` (new) and describe it; a 4xx naming the entry leaves nothing behind."""
    folder.mkdir(parents=True)
    try:
        advice = f"an image-folder data set holds at most {limits.max_images} images and {limits.max_bytes} bytes"
        writer = ArchiveWriter(folder, limits.max_images, limits.max_bytes, code=CODE, advice=advice, skip=_junk)
        unzip(data, writer)
        info = _describe(writer, min(limits.max_pixels, MAX_IMAGE_PIXELS))
        if _in_top_folder(writer):
            writer.strip_top_folder()
        return info
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _refuse(message: str, status: int | None = None) -> SpecError:
    return SpecError(message, field="file", code=CODE, status=status)


def _junk(name: PurePosixPath) -> bool:
    return any(part in JUNK or part.startswith(".") for part in name.parts)


def _in_top_folder(writer: ArchiveWriter) -> bool:
    """Whether the class folders stand in one top folder (digits/0/a.png), which is dropped."""
    return writer.top_folder() is not None and max(len(PurePosixPath(p).parts) for p in writer.files) >= 3


def _describe(writer: ArchiveWriter, max_pixels: int) -> dict[str, Any]:
    if not writer.files:
        raise _refuse("the archive holds no images; zip one folder per class (cats/1.png, dogs/1.png, ...)")
    skipped = 1 if _in_top_folder(writer) else 0
    counts: Counter[str] = Counter()
    for entry in sorted(writer.files):
        parts = PurePosixPath(entry).parts[skipped:]
        if len(parts) == 1:
            raise _refuse(
                f"the archive entry {entry!r} is not in a class folder; put each image in a folder named "
                "after its class (cats/1.png, dogs/1.png)"
            )
        if len(parts) > 2:
            raise _refuse(
                f"the archive entry {entry!r} is nested too deep; images go straight into their class "
                "folder (class_name/image.png)"
            )
        counts[parts[0]] += 1
    for entry in sorted(writer.folders):
        parts = PurePosixPath(entry).parts[skipped:]
        if len(parts) == 1 and parts[0] not in counts:
            raise _refuse(f"the class folder {entry + '/'!r} holds no images; remove it or add its images")
    classes = sorted(counts)
    if len(classes) < 2:
        raise _refuse(f"the archive needs at least two class folders; it has {len(classes)}: {', '.join(classes)}")
    if len(classes) > MAX_CLASSES:
        raise _refuse(f"the archive has {len(classes)} class folders, over the limit of {MAX_CLASSES}")
    sizes: Counter[tuple[int, int]] = Counter()
    modes: Counter[str] = Counter()
    for entry in sorted(writer.files):
        (height, width), mode = _header(writer.folder, entry, writer.files[entry], max_pixels)
        sizes[(height, width)] += 1
        modes[mode] += 1
    common = list(sizes.most_common(1)[0][0])
    color = "grayscale" if set(modes) <= GRAY_MODES else "rgb"
    return {
        "task": CLASSIFICATION,
        "rows": len(writer.files),
        "classes": classes,
        "class_counts": {name: counts[name] for name in classes},
        "image_size": common,
        "sizes_vary": len(sizes) > 1,
        "color": color,
        "modes": dict(sorted(modes.items())),
        "input_shape": [*default_size(common), CHANNELS[color]],
        "bytes": writer.total,
    }


def _header(folder: Path, entry: str, size: int, max_pixels: int) -> tuple[tuple[int, int], str]:
    """(height, width) and mode of one image, read from its header (nothing decoded); a 4xx naming it."""
    if size > MAX_IMAGE_BYTES:
        raise _refuse(f"the image {entry!r} is larger than {MAX_IMAGE_BYTES} bytes", status=413)
    try:
        with Image.open(folder / entry, formats=FORMATS) as img:
            width, height = img.size
            mode = img.mode
            if width * height <= max_pixels:
                img.verify()  # a PNG's chunks are checked against their checksums: cheap, and finds a cut file
    except Image.DecompressionBombError as exc:  # Pillow's own bound, far above ours
        raise _refuse(f"the image {entry!r} declares more than {max_pixels} pixels ({exc})", status=413) from None
    except UnidentifiedImageError:
        raise _refuse(f"the archive entry {entry!r} is not a PNG, JPEG or BMP image") from None
    except Exception as exc:  # Pillow's readers raise many types on a damaged file
        raise _refuse(f"the image {entry!r} is damaged or truncated ({exc})") from None
    if width * height > max_pixels:
        raise _refuse(
            f"the image {entry!r} declares {width}x{height} pixels, over the limit of {max_pixels}", status=413
        )
    return (height, width), mode


def default_size(common: list[int]) -> list[int]:
    """The data set's most common size, shrunk (keeping its shape) to a longest side of DEFAULT_SIDE."""
    height, width = common
    scale = min(1.0, DEFAULT_SIDE / max(height, width))
    return [max(1, round(height * scale)), max(1, round(width * scale))]


def image_input(info: dict[str, Any], asked: dict[str, Any] | None) -> dict[str, Any]:
    """The size ([height, width]) and colour a network job's images are resized to: as asked, or
    the data set's default; a 422 naming `image.size` when they would not fit in memory."""
    asked = asked or {}
    size = list(asked.get("size") or default_size(info["image_size"]))
    color = asked.get("color") or info["color"]
    needed = info["rows"] * size[0] * size[1] * CHANNELS[color]
    if needed > MAX_ARRAY_BYTES:
        raise SpecError(
            f"{info['rows']} images of {size[0]}x{size[1]} {color} take {needed / 1024**3:.1f} GB in memory, over "
            f"the limit of {MAX_ARRAY_BYTES / 1024**3:.0f} GB; ask for a smaller image.size",
            field="image.size",
        )
    return {"size": size, "color": color}


def class_folders(folder: Path) -> Iterator[tuple[str, list[str]]]:
    """Each class (sorted folder names) with its images' paths relative to `folder`, sorted."""
    by_class: dict[str, list[str]] = {}
    for path, _size in storage.regular_files(folder):
        name, _, rest = path.partition("/")
        if rest:
            by_class.setdefault(name, []).append(path)
    for name in sorted(by_class):
        yield name, sorted(by_class[name])


def read_image_folder(folder: Path, size: list[int], color: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every image resized to `size` in `color` as uint8 (images, height, width, channels), the
    class index of each, and the class names; an ImageError names a file that cannot be decoded."""
    classes = list(class_folders(folder))
    total = sum(len(paths) for _, paths in classes)
    x = np.empty((total, size[0], size[1], CHANNELS[color]), dtype=np.uint8)
    y = np.empty(total, dtype=np.int64)
    row = 0
    for label, (_name, paths) in enumerate(classes):
        for path in paths:
            try:
                x[row] = picture((folder / path).read_bytes(), size[0], size[1], CHANNELS[color])
            except ImageError as exc:
                raise ImageError(f"the image {path!r} of the data set: {exc}") from None
            y[row] = label
            row += 1
    return x, y, [name for name, _ in classes]
