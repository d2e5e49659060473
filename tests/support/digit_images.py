"""Real MNIST digits drawn as image files, for tests of image uploads.

The digits come from mnist-8k (6000 training and 2000 test digits of MNIST), the subset that
ships in the package (service/data/files, with its licence).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

# The packaged subset, unless LABTRAIN_TEST_MNIST points elsewhere.
MNIST_8K = Path(
    os.environ.get("LABTRAIN_TEST_MNIST")
    or Path(__file__).resolve().parents[2] / "service" / "data" / "files" / "mnist-8k.npz"
)


def load_mnist_8k() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): digits are (n, 28, 28) uint8, light ink on black."""
    with np.load(MNIST_8K) as data:
        return data["x_train"], data["y_train"], data["x_test"], data["y_test"]


def picture(
    digit: np.ndarray,
    size: int = 280,
    dark_on_light: bool = True,
    resample: Image.Resampling = Image.Resampling.BILINEAR,
) -> Image.Image:
    """A 28x28 uint8 digit enlarged to size x size (smoothly, like a drawing, by default),
    as dark ink on white paper or as light ink on black."""
    img = Image.fromarray(np.asarray(digit, dtype=np.uint8)).resize((size, size), resample)
    return Image.eval(img, lambda v: 255 - v) if dark_on_light else img


def on_page(
    digit: np.ndarray, width: int, height: int, box: tuple[int, int, int, int], dark_on_light: bool = True
) -> Image.Image:
    """A width x height page with the digit's 28x28 field stretched over box
    (left, top, box width, box height), anywhere on the page."""
    left, top, box_width, box_height = box
    page = Image.new("L", (width, height), 0)
    field = Image.fromarray(np.asarray(digit, dtype=np.uint8)).resize(
        (box_width, box_height), Image.Resampling.BILINEAR
    )
    page.paste(field, (left, top))
    return Image.eval(page, lambda v: 255 - v) if dark_on_light else page


def photo(
    digit: np.ndarray,
    size: int = 280,
    paper: tuple[int, int, int] = (196, 192, 182),
    ink: tuple[int, int, int] = (45, 45, 70),
    noise: float = 6.0,
    shade: float = 0.0,
    seed: int = 0,
    quality: int = 85,
) -> bytes:
    """A JPEG like a phone photo of the digit: dark blue ink on grey, slightly tinted paper,
    sensor noise, and light that falls off by the fraction shade from left to right."""
    coverage = np.asarray(picture(digit, size, dark_on_light=False), dtype=np.float64)[..., None] / 255.0
    colour = np.array(paper, dtype=np.float64) * (1 - coverage) + np.array(ink, dtype=np.float64) * coverage
    colour *= np.linspace(1.0, 1.0 - shade, size)[None, :, None]
    colour += np.random.default_rng(seed).normal(0.0, noise, colour.shape)
    img = Image.fromarray(np.clip(np.round(colour), 0, 255).astype(np.uint8))
    return encode(img, "JPEG", quality=quality)


def encode(img: Image.Image, fmt: str = "PNG", rgb: bool = False, **options) -> bytes:
    """The picture as the bytes of an image file (PNG, BMP, JPEG ...)."""
    if rgb:
        img = img.convert("RGB")
    if fmt.upper() in ("JPEG", "JPG"):
        options.setdefault("quality", 90)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def render(
    digit: np.ndarray, size: int = 280, fmt: str = "PNG", dark_on_light: bool = True, rgb: bool = False
) -> bytes:
    """A 28x28 uint8 digit as an image file of size x size pixels."""
    return encode(picture(digit, size, dark_on_light), fmt, rgb)
