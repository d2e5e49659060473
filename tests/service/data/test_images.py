"""Uploaded digit pictures become MNIST-style input (service.images).

Real MNIST test digits are drawn as image files, processed, and compared with the
originals: a classifier trained on raw MNIST must read them about as well as the raw
digits, and the pixels must be close to the originals.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from sklearn.neighbors import KNeighborsClassifier

from service.data.images import MAX_IMAGE_BYTES, ImageError, mnist_digit, to_input
from tests.support.digit_images import encode, load_mnist_8k, on_page, photo, picture, render

N_DIGITS = 200


@pytest.fixture(scope="module")
def mnist():
    return load_mnist_8k()


@pytest.fixture(scope="module")
def digits(mnist):
    _, _, x_test, y_test = mnist
    return x_test[:N_DIGITS], y_test[:N_DIGITS]


@pytest.fixture(scope="module")
def knn(mnist):
    x_train, y_train, _, _ = mnist
    return KNeighborsClassifier(n_neighbors=3).fit(_flat(x_train), y_train)


def _flat(images: np.ndarray) -> np.ndarray:
    return np.asarray(images, dtype=np.float64).reshape(len(images), -1) / 255.0


def _accuracy(model, images, labels) -> float:
    return float((model.predict(_flat(images)) == labels).mean())


def _centre_of_mass(digit: np.ndarray) -> np.ndarray:
    return np.array(ndimage.center_of_mass(digit.astype(np.float64)))


def _extent(digit: np.ndarray) -> tuple[int, int]:
    """(height, width) of the box around the nonzero pixels."""
    rows = np.flatnonzero(digit.any(axis=1))
    cols = np.flatnonzero(digit.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def _assert_mnist_like(digit: np.ndarray) -> None:
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    assert digit.max() == 255
    assert np.abs(_centre_of_mass(digit) - 14.0).max() <= 1.0
    assert max(_extent(digit)) in (19, 20, 21)


# Each upload kind, and the mean absolute pixel difference allowed from the originals
# (0..255 scale). Drawn smoothly (bilinear, like a real stroke), a 280-pixel digit comes
# back about 7.5 off: mostly the blur of enlarging and shrinking again (an ideal,
# perfectly aligned round trip is already 5.2 off). Drawn as hard pixel blocks, the
# digits come back almost exactly (0.4 to 0.6).
UPLOADS = {
    "bmp-dark-on-light": (lambda d: render(d, fmt="BMP"), 10.0),
    "png-dark-on-light-rgb": (lambda d: render(d, fmt="PNG", rgb=True), 10.0),
    "jpeg-light-on-dark": (lambda d: render(d, fmt="JPEG", dark_on_light=False), 10.0),
    "jpeg-dark-on-light-rgb": (lambda d: render(d, fmt="JPEG", rgb=True), 10.0),
    "photo-grey-paper-noise": (lambda d: photo(d), 10.0),
    "photo-half-in-shadow": (lambda d: photo(d, shade=0.5), 10.0),
    "png-pixel-blocks": (lambda d: encode(picture(d, resample=Image.Resampling.NEAREST), "PNG"), 1.5),
}


@pytest.mark.parametrize("upload", UPLOADS)
def test_rendered_mnist_digits_come_back_as_mnist(upload, digits, knn):
    make, max_mean_difference = UPLOADS[upload]
    originals, labels = digits
    processed = np.stack([mnist_digit(make(d)) for d in originals])

    assert processed.shape == (N_DIGITS, 28, 28) and processed.dtype == np.uint8
    assert (processed.reshape(N_DIGITS, -1).max(axis=1) == 255).all()
    raw, got = _accuracy(knn, originals, labels), _accuracy(knn, processed, labels)
    assert got >= raw - 0.02, f"{upload}: accuracy {got:.3f} on processed digits, {raw:.3f} on raw"
    difference = np.abs(processed.astype(np.float64) - originals).mean()
    assert difference < max_mean_difference, f"{upload}: mean pixel difference {difference:.2f}"
    centres = np.array([_centre_of_mass(d) for d in processed])
    assert np.abs(centres - 14.0).max() <= 0.75


@pytest.mark.parametrize(
    "page, box",
    [
        ((1200, 900), (40, 60, 300, 300)),  # small digit in the top-left corner of a big page
        ((900, 200), (700, 10, 180, 180)),  # wide strip, digit at the right end
        ((150, 700), (5, 480, 140, 140)),  # tall strip, digit near the bottom
    ],
)
def test_digits_anywhere_on_any_page_are_centred_and_sized(page, box, digits):
    originals, _ = digits
    for digit in originals[:10]:
        out = mnist_digit(encode(on_page(digit, *page, box), "PNG"))
        _assert_mnist_like(out)
        assert max(_extent(out)) == 20


def test_aspect_ratio_is_kept(digits):
    originals, _ = digits
    for digit in originals[:10]:
        # The 28x28 field stretched to 400 x 120: ink three and a third times wider.
        out = mnist_digit(encode(on_page(digit, 600, 300, (100, 90, 400, 120)), "PNG"))
        ink_height, ink_width = _extent(digit)
        stretched_height, stretched_width = ink_height * 120 / 28, ink_width * 400 / 28
        expected_height = 20 * min(1.0, stretched_height / stretched_width)
        expected_width = 20 * min(1.0, stretched_width / stretched_height)
        height, width = _extent(out)
        assert abs(height - expected_height) <= 1.5 and abs(width - expected_width) <= 1.5
        assert np.abs(_centre_of_mass(out) - 14.0).max() <= 1.0


def test_small_pictures_are_enlarged(digits, knn):
    originals, labels = digits
    # The whole 28x28 field in 20 pixels: the digit is only about 14 pixels tall.
    processed = np.stack([mnist_digit(render(d, size=20)) for d in originals[:50]])
    for out in processed:
        _assert_mnist_like(out)
    assert _accuracy(knn, processed, labels[:50]) >= _accuracy(knn, originals[:50], labels[:50]) - 0.04


def test_transparent_background_counts_as_white_paper(digits):
    digit = digits[0][0]
    ink = np.asarray(picture(digit, dark_on_light=False))
    rgba = np.zeros(ink.shape + (4,), dtype=np.uint8)
    rgba[..., 3] = ink  # black strokes, opaque only where drawn
    out = mnist_digit(encode(Image.fromarray(rgba), "PNG"))
    expected = mnist_digit(render(digit))
    assert np.abs(out.astype(int) - expected).mean() < 1.0


def test_exif_orientation_is_applied(digits):
    digit = digits[0][0]
    upright = picture(digit)
    # A phone held sideways stores the picture turned and says so in EXIF (orientation 6:
    # turn 90 degrees clockwise to show it).
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", quality=90, exif=exif.tobytes())

    out = mnist_digit(buf.getvalue()).astype(int)
    expected = mnist_digit(encode(upright, "JPEG"))
    sideways = mnist_digit(encode(stored, "JPEG"))
    assert np.abs(out - expected).mean() < 2.0
    assert np.abs(out - sideways).mean() > 10.0


def test_sixteen_bit_png(digits):
    digit = digits[0][0]
    deep = np.asarray(picture(digit), dtype=np.uint16) * 257
    out = mnist_digit(encode(Image.fromarray(deep), "PNG"))
    assert np.abs(out.astype(int) - mnist_digit(render(digit))).mean() < 1.0


def test_a_speck_of_dirt_is_ignored(digits):
    digit = digits[0][0]
    page = np.array(on_page(digit, 600, 600, (100, 100, 280, 280)))
    page[540:546, 540:546] = 0  # a small black dot far from the digit
    out = mnist_digit(encode(Image.fromarray(page), "PNG"))
    assert np.array_equal(out, mnist_digit(encode(on_page(digit, 600, 600, (100, 100, 280, 280)), "PNG")))


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb)."""
    png = encode(Image.new("L", (1, 1), 255), "PNG")
    ihdr = b"IHDR" + struct.pack(">II", width, height) + png[24:29]
    return png[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]


def _blank(colour: int, noise: float = 0.0) -> bytes:
    levels = np.full((200, 300), float(colour))
    levels += np.random.default_rng(1).normal(0.0, noise, levels.shape)
    return encode(Image.fromarray(np.clip(np.round(levels), 0, 255).astype(np.uint8)), "JPEG")


def _gif() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (20, 20), 255).save(buf, format="GIF")
    return buf.getvalue()


@pytest.mark.parametrize(
    "data, message",
    [
        (b"hello", "the file is not an image (PNG, BMP or JPEG)"),
        (
            b"sepal_length,sepal_width,species\n5.1,3.5,setosa\n4.9,3.0,setosa\n",
            "the file is not an image (PNG, BMP or JPEG)",
        ),
        (b"\x89PNG\r\n\x1a\n", "the file is not an image (PNG, BMP or JPEG)"),
        (_gif(), "the file is not an image (PNG, BMP or JPEG)"),
        (b"", "the file is empty"),
        (b"\xff" * (MAX_IMAGE_BYTES + 1), "the file is larger than 10 MB"),
        ("a string", "the upload must be the bytes of an image file"),
    ],
    ids=["text", "csv", "png-signature-only", "gif", "empty", "too-many-bytes", "not-bytes"],
)
def test_what_is_not_an_image_is_refused(data, message):
    with pytest.raises(ImageError) as caught:
        mnist_digit(data)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "JPEG"])
def test_truncated_images_are_refused(fmt, digits):
    data = render(digits[0][0], fmt=fmt)
    for cut in (100, len(data) // 2):
        with pytest.raises(ImageError, match="^the image cannot be decoded: the file is damaged or truncated$"):
            mnist_digit(data[:cut])


@pytest.mark.parametrize("width, height", [(8000, 8000), (40000, 40000)])
def test_decompression_bombs_are_refused(width, height):
    with pytest.raises(ImageError, match="too large"):
        mnist_digit(_png_claiming(width, height))


@pytest.mark.parametrize(
    "data",
    [
        encode(Image.new("L", (300, 200), 255), "PNG"),
        encode(Image.new("RGB", (300, 200), (0, 0, 0)), "BMP"),
        encode(Image.new("RGBA", (300, 200), (0, 0, 0, 0)), "PNG"),
        _blank(190, noise=6.0),
    ],
    ids=["white", "black", "transparent", "grey-noisy-paper"],
)
def test_blank_pictures_are_refused(data):
    with pytest.raises(ImageError, match="^the image is blank: no digit found$"):
        mnist_digit(data)


def test_to_input_fits_the_digits_data_set(digits):
    digit = mnist_digit(render(digits[0][0]))
    small = to_input(digit, 8, 8, 16.0)
    assert small.shape == (8, 8) and small.dtype == np.float32
    assert small.min() >= 0.0 and 8.0 < small.max() <= 16.0
    # Area averages: the mean brightness is about kept.
    assert small.mean() == pytest.approx(digit.mean() * 16.0 / 255.0, rel=0.1)

    full = to_input(np.full((28, 28), 255, dtype=np.uint8), 8, 8, 16.0)
    assert np.allclose(full, 16.0)


def test_to_input_same_size_only_rescales(digits):
    digit = mnist_digit(render(digits[0][0]))
    same = to_input(digit, 28, 28, 1.0)
    assert same.dtype == np.float32 and np.allclose(same, digit / 255.0)
    big = to_input(digit, 32, 40, 255.0)
    assert big.shape == (32, 40) and big.min() >= 0.0 and big.max() <= 255.0


def test_to_input_refuses_what_is_not_a_digit():
    with pytest.raises(ImageError):
        to_input(np.zeros(784, dtype=np.uint8), 8, 8, 16.0)
    with pytest.raises(ImageError):
        to_input(np.zeros((28, 28), dtype=np.uint8), 0, 8, 16.0)
    with pytest.raises(ImageError):
        to_input(np.zeros((28, 28), dtype=np.uint8), 8, 8, 0.0)
