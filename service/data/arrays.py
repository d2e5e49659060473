"""Array data sets for networks: the known image sets (MNIST, Fashion-MNIST, CIFAR-10: an NPZ
each in the data directory, Keras layout; service/data/known.py), scikit-learn's digits, and
uploaded NPZ files. NPZ files are read with allow_pickle=False: never unpickled."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from service.data.known import KNOWN
from service.data.tables import DataError
from service.data.tasks import CLASSIFICATION, REGRESSION

# Every built-in a network or a code job reads as images: the known sets, once installed, and digits.
IMAGE_BUILTINS = (*KNOWN, "digits")
SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")
MAX_CLASSES = 1000


@dataclass
class ArrayData:
    """What a network trainer gets: arrays in their raw form, and what they mean."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: str
    input_shape: tuple[int, ...]
    classes: list[Any] | None  # label of each output unit (classification)
    class_names: list[str] | None = None
    features: list[str] | None = None  # column names (tables)
    pixel_max: float | None = None  # raw value of the brightest pixel (images)
    resize: dict[str, Any] | None = None  # an image folder's {"size", "color"}: how predict fits pictures
    dataset_label: str | None = None  # a built-in served by its subset, as the job's result names it

    @property
    def image(self) -> bool:
        return len(self.input_shape) == 3


def builtin_path(name: str, data_dir: Path) -> Path:
    """Where a known image set is installed: `<data_dir>/<name>.npz`."""
    return Path(data_dir) / KNOWN[name].filename


def read_npz(data: bytes | Path) -> dict[str, np.ndarray]:
    """The arrays of an NPZ file; object arrays (which would need unpickling) are refused."""
    try:
        source = io.BytesIO(data) if isinstance(data, bytes) else data
        with np.load(source, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        reason = "it holds Python objects, which are never loaded" if "pickle" in str(exc) else str(exc)
        raise DataError(f"the file is not a usable NPZ archive ({reason}); save it with numpy.savez") from None


def is_npz(data: bytes | BinaryIO) -> bool:
    """Whether a zip is an NPZ (numpy.savez writes nothing but .npy entries) rather than another
    archive (an image folder). Bytes that are no readable zip count as NPZ: its reader says why."""
    try:
        with zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return True
    return bool(names) and all(name.endswith(".npy") for name in names)


@lru_cache(maxsize=8)
def _cached_npz(path: str, mtime: float) -> dict[str, np.ndarray]:
    return read_npz(Path(path))


def load_npz_file(path: Path) -> dict[str, np.ndarray]:
    """Cached by path and modification time: MNIST is read once per process."""
    return _cached_npz(str(path), path.stat().st_mtime)


@lru_cache(maxsize=16)
def _npz_info(path: str, mtime_ns: int) -> dict[str, Any]:
    # What the API needs of an installed set, without keeping its arrays (CIFAR-10 is 180 MB).
    return check_arrays(read_npz(Path(path)))


def check_arrays(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Validate an NPZ's arrays (`x`, `y`, or the Keras `x_train`...`y_test` layout) and describe them."""
    keys = set(arrays)
    if {"x", "y"} <= keys:
        parts = [(arrays["x"], arrays["y"])]
    elif set(SPLIT_KEYS) <= keys:
        parts = [(arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])]
    else:
        raise DataError(f"the NPZ needs arrays x and y (or {', '.join(SPLIT_KEYS)}); it has {sorted(keys) or 'none'}")
    shapes = set()
    for x, y in parts:
        if x.dtype.kind not in "uif" or y.dtype.kind not in "uifb":
            raise DataError(f"x and y must hold numbers; they hold {x.dtype} and {y.dtype}")
        if x.ndim not in (2, 3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)):
            raise DataError(
                f"x must be (rows, features), (rows, height, width) or (rows, height, width, 1 or 3); "
                f"it is {list(x.shape)}"
            )
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"y must be one label per row of x: x has {len(x)} rows, y has shape {list(y.shape)}")
        if len(x) < 2:
            raise DataError("the data needs at least two rows")
        if not np.isfinite(x).all() or not np.isfinite(y.astype(float)).all():
            raise DataError("x and y must not contain NaN or infinite values")
        shapes.add(tuple(x.shape[1:]))
    if len(shapes) != 1:
        raise DataError(f"training and test images differ in shape: {sorted(shapes)}")
    y_all = np.concatenate([y for _, y in parts])
    integer_labels = y_all.dtype.kind in "uib" or np.all(np.mod(y_all, 1) == 0)
    classes = np.unique(y_all)
    task = CLASSIFICATION if integer_labels and len(classes) <= MAX_CLASSES else REGRESSION
    x_first = parts[0][0]
    input_shape = list(shapes.pop())
    if len(input_shape) == 2:
        input_shape.append(1)  # grayscale images get their channel axis
    return {
        "input_shape": input_shape,
        "rows": int(sum(len(x) for x, _ in parts)),
        "has_test": len(parts) == 2,
        "task": task,
        "classes": classes.tolist() if task == CLASSIFICATION else None,
        "pixel_max": _pixel_max(x_first) if len(input_shape) == 3 else None,
    }


def _pixel_max(x: np.ndarray) -> float:
    # 8-bit images are 0..255 whatever the brightest pixel in this sample is.
    return 255.0 if x.dtype == np.uint8 else float(np.abs(x).max() or 1.0)


def builtin_array_info(name: str, data_dir: Path) -> dict[str, Any]:
    if name in KNOWN:
        path = builtin_path(name, data_dir)
        if not path.exists():
            raise DataError(
                f"{name} is not installed on this server: an admin installs it with `labtrain datasets fetch "
                f"{name}` (or puts {KNOWN[name].filename} in the Keras layout at {path})",
                field="dataset",
            )
        info = dict(_npz_info(str(path), path.stat().st_mtime_ns))
        names = KNOWN[name].class_names
        info["class_names"] = list(names) if len(names) == len(info["classes"]) else [str(c) for c in info["classes"]]
        return info
    return {
        "input_shape": [8, 8, 1],
        "rows": 1797,
        "has_test": False,
        "task": CLASSIFICATION,
        "classes": list(range(10)),
        "class_names": [str(c) for c in range(10)],
        "pixel_max": 16.0,
    }


def with_channel(x: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    return x.reshape((len(x), *input_shape)) if x.ndim == 3 else x
