"""Uploaded pictures of a handwritten digit, turned into MNIST-style model input.

MNIST digits were made from scanned ink: each digit was size-normalised to fit a 20x20
box (keeping its aspect ratio, anti-aliased into grey levels) and then placed in a 28x28
field so that its centre of mass sits at the centre. A model trained on MNIST only works
on input prepared the same way, so `mnist_digit` repeats those steps on a student's
photo or drawing: decoded safely, turned light-on-black, cleared of paper grey, uneven
lighting and noise, cropped, scaled, centred and stretched to full contrast.
`to_input` then fits that 28x28 digit to the input shape and value range of a model
(for example scikit-learn's 8x8 `digits`, valued 0..16).
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage


class ImageError(ValueError):
    """An upload that cannot be read as a picture of a digit."""


MAX_IMAGE_BYTES = 10 * 1024 * 1024
# Decoded size limit: a tiny PNG or RLE BMP can claim a huge canvas (a decompression
# bomb). 50 megapixels still admits the largest phone photos.
MAX_IMAGE_PIXELS = 50_000_000
FORMATS = ("PNG", "BMP", "JPEG")

DIGIT_BOX = 20  # MNIST fits each digit in a 20x20 box ...
CANVAS = 28  # ... inside a 28x28 field ...
CENTRE = 14.0  # ... with its centre of mass at pixel (14, 14), as in the data set.
# Larger pictures are box-reduced to this longest side first: plenty of detail for a
# 20-pixel digit, and it bounds the work per upload.
WORK_SIDE = 1024

BORDER_FRACTION = 0.02  # thickness of the frame that samples the background
PAPER_GRID = 64  # the paper's lighting is modelled on a grid this coarse ...
PAPER_ROUNDS = 4  # ... refitted this often, each time leaving out what stands ...
PAPER_SIGMAS = 2.5  # ... this many deviations above it (ink)
MIN_PAPER = 32.0  # paper darker than this is not scaled up further
NOISE_SIGMAS = 3.0  # levels within this many noise deviations of the paper are not ink
BLANK_SIGMAS = 6.0  # the brightest ink must stand this many deviations above the paper
MIN_CONTRAST = 16.0  # grey levels ink must stand out by; less is a blank page
FAINT_FRACTION = 0.05  # fainter than this fraction of the brightest ink is haze, not ink
STROKE_FRACTION = 0.2  # a stroke is ink at least this fraction of the brightest ink
MIN_PART = 0.05  # strokes with less mass than this share of the largest are specks


def mnist_digit(data: bytes) -> np.ndarray:
    """The digit in an uploaded PNG, BMP or JPEG as a (28, 28) uint8 array, light on black."""
    gray = _decode(data)
    ink = _ink(gray)
    crop = _crop(ink)
    digit = _centre(_scale(crop))
    return np.round(digit * (255.0 / digit.max())).astype(np.uint8)


def to_input(digit: np.ndarray, height: int, width: int, pixel_max: float) -> np.ndarray:
    """A 28x28 digit resized to (height, width) and valued 0..pixel_max, as float32."""
    digit = np.asarray(digit)
    if digit.ndim != 2:
        raise ImageError(f"a digit is a 2-D array; got shape {digit.shape}")
    if height < 1 or width < 1:
        raise ImageError(f"the input size must be positive; got {height}x{width}")
    if not pixel_max > 0:
        raise ImageError(f"the largest pixel value must be positive; got {pixel_max}")
    image = digit.astype(np.float32)
    if image.shape != (height, width):
        # Lanczos may overshoot when enlarging; the scale stays 0..255.
        image = np.clip(_resize(image, height, width), 0.0, 255.0)
    return (image * np.float32(pixel_max / 255.0)).astype(np.float32)


def _decode(data: bytes) -> np.ndarray:
    """Grey levels 0..255 (float32) of an upload, upright, transparency shown as white."""
    gray = _flatten(_open(data, "L"))
    if max(gray.size) > WORK_SIDE:
        gray.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.BOX)
    return np.asarray(gray, dtype=np.float32)


def picture(data: bytes, height: int, width: int, channels: int) -> np.ndarray:
    """An uploaded picture as it is (no digit finding): upright, transparency shown as white,
    resized to (height, width), grey (1 channel) or RGB (3), levels 0..255 as float32 of shape
    (height, width, channels)."""
    img = _open(data, "L" if channels == 1 else "RGB")
    img = _flatten(img) if channels == 1 else _on_white(img).convert("RGB")
    img = img.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(img, dtype=np.float32).reshape(height, width, channels)


def _open(data: bytes, mode: str) -> Image.Image:
    """The upload decoded (PNG, BMP or JPEG, within the size limits) and turned upright."""
    if not isinstance(data, (bytes, bytearray)):
        raise ImageError("the upload must be the bytes of an image file")
    if len(data) == 0:
        raise ImageError("the file is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(f"the file is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB")
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            if img.format == "JPEG":
                # Let the JPEG decoder scale down while decoding: cheap, and big photos
                # never need full resolution.
                img.draft(mode, (WORK_SIDE, WORK_SIDE))
            _check_size(img)
            img.load()
            return ImageOps.exif_transpose(img)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"the image is too large to process ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError("the file is not an image (PNG, BMP or JPEG)") from exc
    except Exception as exc:  # Pillow's decoders raise many types on corrupt input
        raise ImageError("the image cannot be decoded: the file is damaged or truncated") from exc


def _check_size(img: Image.Image) -> None:
    width, height = img.size
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(
            f"the image is too large: {width}x{height} pixels; send at most {MAX_IMAGE_PIXELS // 1_000_000} megapixels"
        )


def _flatten(img: Image.Image) -> Image.Image:
    """An 8-bit grey image; transparent parts become white paper."""
    if img.mode.startswith("I"):  # 16-bit PNG: convert("L") would clip, so scale down
        levels = np.asarray(img, dtype=np.float64) / 257.0
        return Image.fromarray(np.clip(np.round(levels), 0, 255).astype(np.uint8))
    return _on_white(img).convert("L")


def _on_white(img: Image.Image) -> Image.Image:
    """Transparent parts become white paper."""
    if img.has_transparency_data:
        rgba = img.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(paper, rgba)
    return img


def _frame(shape: tuple[int, int]) -> np.ndarray:
    """A mask of the outer frame, where a picture of one digit shows the background."""
    t = max(1, round(BORDER_FRACTION * min(shape)))
    mask = np.ones(shape, dtype=bool)
    mask[t:-t, t:-t] = False
    return mask


def _level_and_noise(values: np.ndarray) -> tuple[float, float]:
    """Median and robust standard deviation (scaled median absolute deviation)."""
    level = float(np.median(values))
    return level, 1.4826 * float(np.median(np.abs(values - level)))


def _ink(gray: np.ndarray) -> np.ndarray:
    """Ink as bright-on-black levels, with the background (paper grey and noise) taken out."""
    border = gray[_frame(gray.shape)]
    # Light background when the frame is nearer the brightest than the darkest pixel:
    # this still holds for dim photos whose paper is mid-grey.
    light = np.median(border) > (gray.min() + gray.max()) / 2
    if light:
        gray = 255.0 - gray
    paper = _paper(gray)
    gray = gray - paper
    if light:
        # Light falls on ink and paper alike: ink in a shadow shows less contrast, but
        # the same contrast relative to the paper's brightness there.
        gray = gray * (255.0 / np.clip(255.0 - paper, MIN_PAPER, None))
    level, noise = _level_and_noise(gray[_frame(gray.shape)])
    ink = np.clip(gray - level, 0.0, None)
    peak = float(ink.max())
    # Noise alone reaches about 5 deviations in a megapixel; ink must clear that.
    if peak < max(MIN_CONTRAST, BLANK_SIGMAS * noise):
        raise ImageError("the image is blank: no digit found")
    # Sensor noise, paper grain and JPEG ringing leave a faint haze; left in, it would
    # widen the digit. It is cut off rather than subtracted so the ink keeps its levels.
    ink[ink < max(NOISE_SIGMAS * noise, FAINT_FRACTION * peak)] = 0.0
    return ink


def _paper(gray: np.ndarray) -> np.ndarray:
    """The paper's level at each pixel (ink bright): a smooth quadratic surface fitted to
    what is not ink, so a photo's uneven lighting does not read as ink or hide it."""
    height, width = gray.shape
    scale = min(1.0, PAPER_GRID / max(height, width))
    small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(
        Image.fromarray(gray.astype(np.float32)).resize(small_size, Image.Resampling.BOX), dtype=np.float64
    )
    terms = _quadratic_terms(*small.shape)
    values = small.ravel()
    # Start from the frame, less any ink that crosses it; later rounds take in the inside.
    frame = _frame(small.shape).ravel()
    level, spread = _level_and_noise(values[frame])
    paper = frame & (values <= level + PAPER_SIGMAS * spread + 1.0)
    for _ in range(PAPER_ROUNDS):
        coef = _least_squares(terms[paper], values[paper])
        residual = values - np.einsum("ij,j->i", terms, coef)
        _, spread = _level_and_noise(residual[paper])
        # Ink lies well above the paper; the fit is redone without it.
        paper = residual <= PAPER_SIGMAS * spread + 1.0
    y, x = _centres(height)[:, None], _centres(width)[None, :]
    return coef[0] + coef[1] * x + coef[2] * y + coef[3] * x * x + coef[4] * x * y + coef[5] * y * y


def _least_squares(terms: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Coefficients through the 6x6 normal equations: well conditioned on -1..1, and
    a tiny solve instead of a threaded LAPACK call per round."""
    gram = np.einsum("ij,ik->jk", terms, terms)
    return np.linalg.lstsq(gram, np.einsum("ij,i->j", terms, values), rcond=None)[0]


def _quadratic_terms(height: int, width: int) -> np.ndarray:
    """1, x, y, x², xy, y² for each pixel, one row per pixel."""
    y, x = np.meshgrid(_centres(height), _centres(width), indexing="ij")
    x, y = x.ravel(), y.ravel()
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)


def _centres(n: int) -> np.ndarray:
    """Pixel centres on a coordinate that spans -1..1 whatever the resolution."""
    return (np.arange(n) + 0.5) / n * 2 - 1


def _crop(ink: np.ndarray) -> np.ndarray:
    """The digit's bounding box, without specks of noise or dirt."""
    strokes = _strokes(ink)
    # The box is that of the strokes: the faint rim a blurred or smoothed edge adds
    # would otherwise count as digit and shrink it (MNIST's 20-pixel boxes hold even when
    # only ink above a fifth of the maximum is counted).
    rows, cols = _bounds(strokes)
    # Inside the box keep the faint edges within one output pixel (1/20 of the digit) of
    # a stroke, and nothing further away: specks between the strokes go.
    reach = max(1, math.ceil(max(rows.stop - rows.start, cols.stop - cols.start) / DIGIT_BOX))
    near = ndimage.maximum_filter(strokes[rows, cols], size=2 * reach + 1)
    return np.where(near, ink[rows, cols], 0.0)


def _strokes(ink: np.ndarray) -> np.ndarray:
    """Pixels of the connected strokes that carry a real share of the ink."""
    labels, count = ndimage.label(ink >= STROKE_FRACTION * ink.max(), structure=np.ones((3, 3)))
    mass = np.asarray(ndimage.sum(ink, labels, index=np.arange(1, count + 1)))
    kept = 1 + np.flatnonzero(mass >= MIN_PART * mass.max())
    return np.isin(labels, kept)


def _bounds(mask: np.ndarray) -> tuple[slice, slice]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _scale(crop: np.ndarray) -> np.ndarray:
    """The crop with its longest side at 20 pixels, aspect ratio kept."""
    height, width = crop.shape
    factor = DIGIT_BOX / max(height, width)
    return _resize(crop, max(1, round(height * factor)), max(1, round(width * factor)))


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Anti-aliased resize of a float image: area averages when shrinking (as a scanner
    integrates ink), Lanczos when enlarging; never negative."""
    shrinking = height <= image.shape[0] and width <= image.shape[1]
    method = Image.Resampling.BOX if shrinking else Image.Resampling.LANCZOS
    resized = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32)).resize((width, height), method)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, None)


def _centre(digit: np.ndarray) -> np.ndarray:
    """A 28x28 canvas with the digit's centre of mass moved to (14, 14), by whole pixels
    (no blur); a lopsided digit is shifted only as far as keeps all of it on the canvas."""
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    cy, cx = ndimage.center_of_mass(digit)
    top = _offset(CENTRE - cy, digit.shape[0])
    left = _offset(CENTRE - cx, digit.shape[1])
    canvas[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    return canvas


def _offset(shift: float, size: int) -> int:
    return int(min(max(math.floor(shift + 0.5), 0), CANVAS - size))
