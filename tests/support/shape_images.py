"""Generated image-folder data sets: circles and squares drawn with Pillow, zipped as
`class_name/image.png` folders the way a student would zip them."""

from __future__ import annotations

import io
import stat
import zipfile

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square")


def shape_image(shape: str, rng: np.random.Generator, side: int = 16, mode: str = "RGB") -> Image.Image:
    """A filled circle or square of random size, place and colour on a random dark background."""
    background = tuple(int(v) for v in rng.integers(0, 60, 3))
    colour = tuple(int(v) for v in rng.integers(150, 256, 3))
    img = Image.new("RGB", (side, side), background)
    extent = int(rng.integers(side // 2, side - 2))
    left, top = (int(v) for v in rng.integers(0, side - extent, 2))
    box = (left, top, left + extent - 1, top + extent - 1)
    draw = ImageDraw.Draw(img)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    else:
        draw.rectangle(box, fill=colour)
    return img.convert(mode)


def encode(img: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue()


def shape_files(per_class: int = 100, side: int = 16, seed: int = 0, top: str = "") -> dict[str, bytes]:
    """{"circle/0000.png": PNG bytes, ...}; `top` puts the class folders inside one folder."""
    rng = np.random.default_rng(seed)
    prefix = f"{top}/" if top else ""
    return {
        f"{prefix}{shape}/{i:04d}.png": encode(shape_image(shape, rng, side))
        for shape in SHAPES
        for i in range(per_class)
    }


def zipped(
    files: dict[str, bytes],
    folders: tuple[str, ...] = (),
    links: dict[str, str] | None = None,
    devices: tuple[str, ...] = (),
) -> bytes:
    """A zip of `files`, with folder entries, symbolic-link entries (name: target) and
    character-device entries where asked."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in folders:
            archive.writestr(zipfile.ZipInfo(name.rstrip("/") + "/"), b"")
        for name, data in files.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            archive.writestr(_entry(name, stat.S_IFLNK | 0o777), target)
        for name in devices:
            archive.writestr(_entry(name, stat.S_IFCHR | 0o644), b"")
    return buffer.getvalue()


def _entry(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    return info
