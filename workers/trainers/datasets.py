"""Loading a job's data set, as the trainers want it: tables for classic jobs, arrays
(images, or a table's numbers) for networks."""

from __future__ import annotations

from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sklearn.model_selection import train_test_split

from service.data.arrays import ArrayData, builtin_path, check_arrays, load_npz_file, with_channel
from service.data.fetch import state
from service.data.image_folders import IMAGE_FOLDER, read_image_folder
from service.data.images import ImageError
from service.data.known import KNOWN
from service.data.tables import BUILTINS, Table, load_builtin, read_csv_file, table_from_frame
from service.data.tasks import CLASSIFICATION
from workers.trainers.base import JobFailed


class Split(Protocol):
    """How a data set without a test part is split (a network run's `evaluation`)."""

    test_size: float
    seed: int


@cache
def _builtin(name: str) -> Table:
    # Built-ins are small and never change: keep them loaded for the worker's lifetime.
    return load_builtin(name)


@lru_cache(maxsize=8)
def _uploaded(path: str, target: str | None) -> Table:
    return table_from_frame(read_csv_file(path), target)


def load_table(dataset: Any, uploaded_path: str | None) -> Table:
    """The table a classic job names: a built-in, or an uploaded CSV with its chosen target."""
    if isinstance(dataset, str):
        if dataset not in BUILTINS:
            raise ValueError(f"unknown built-in data set {dataset!r}")
        return _builtin(dataset)
    if uploaded_path is None:
        raise ValueError(f"uploaded data set {dataset['id']} has no file")
    return _uploaded(uploaded_path, dataset.get("target"))


def load_arrays(
    dataset: Any,
    input_shape: tuple[int, ...],
    task: str,
    evaluation: Split,
    uploaded: tuple[str, str] | None,
    data_dir: Path,
    image: dict[str, Any] | None = None,
) -> ArrayData:
    """The arrays a network job trains on: (x_train, y_train, x_test, y_test), labels as class
    indices; an image folder's pictures resized as `image` says ({"size", "color"})."""
    if isinstance(dataset, str) and dataset in KNOWN:  # mnist, fashion_mnist, cifar10: installed NPZ files
        known = KNOWN[dataset]
        arrays = load_npz_file(builtin_path(dataset, data_dir))
        info = {**check_arrays(arrays), "class_names": list(known.class_names) or None}
        data = _from_arrays(arrays, info, input_shape, evaluation)
        data.dataset_label = subset_label(dataset, data_dir)
        return data
    if dataset == "digits":
        import sklearn.datasets

        digits = sklearn.datasets.load_digits()
        arrays = {"x": digits.images.astype(np.float32), "y": digits.target}
        info = {**check_arrays(arrays), "pixel_max": 16.0}
        return _from_arrays(arrays, info, input_shape, evaluation)
    if isinstance(dataset, str):  # a tabular built-in
        table = _builtin(dataset)
        return _from_table(table, input_shape, evaluation, task)
    kind, path = uploaded or (None, None)
    if path is None:
        raise ValueError(f"uploaded data set {dataset['id']} has no file")
    if kind == "npz":
        arrays = load_npz_file(Path(path))
        return _from_arrays(arrays, check_arrays(arrays), input_shape, evaluation)
    if kind == IMAGE_FOLDER:
        return _from_image_folder(Path(path), image, input_shape, evaluation)
    return _from_table(_uploaded(path, dataset.get("target")), input_shape, evaluation, task)


def subset_label(name: str, data_dir: Path) -> str | None:
    """`mnist (subset: ...)` while a known data set is served by its packaged subset, else None:
    what a job on it says in its result."""
    known = KNOWN.get(name)
    if known is None:
        return None
    installed = state(known, data_dir)
    return installed.label(known) if installed.subset else None


def _from_arrays(
    arrays: dict[str, np.ndarray], info: dict[str, Any], input_shape: tuple[int, ...], evaluation: Split
) -> ArrayData:
    classes = info["classes"]
    if "x_train" in arrays:
        parts = [arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]]
    else:
        parts = _split(arrays["x"], arrays["y"], evaluation, stratify=classes is not None)
    x_train, y_train, x_test, y_test = parts
    if classes is not None:
        y_train, y_test = np.searchsorted(classes, y_train), np.searchsorted(classes, y_test)
    return ArrayData(
        x_train=with_channel(x_train, input_shape),
        y_train=y_train,
        x_test=with_channel(x_test, input_shape),
        y_test=y_test,
        task=info["task"],
        input_shape=input_shape,
        classes=classes,
        class_names=info.get("class_names"),
        pixel_max=info.get("pixel_max"),
        resize=info.get("resize"),
    )


def _from_image_folder(
    folder: Path, image: dict[str, Any], input_shape: tuple[int, ...], evaluation: Split
) -> ArrayData:
    try:
        x, y, names = read_image_folder(folder, image["size"], image["color"])
    except ImageError as exc:
        raise JobFailed("invalid_dataset", str(exc)) from None
    classes = list(range(len(names)))
    info = {"task": CLASSIFICATION, "classes": classes, "class_names": names, "pixel_max": 255.0, "resize": image}
    return _from_arrays({"x": x, "y": y}, info, input_shape, evaluation)


def _from_table(table: Table, input_shape: tuple[int, ...], evaluation: Split, task: str) -> ArrayData:
    x = table.X.to_numpy(dtype=np.float32)
    y = table.y.to_numpy()
    classes = None
    if task == CLASSIFICATION:
        classes_array, y = np.unique(y, return_inverse=True)
        classes = classes_array.tolist()
    x_train, y_train, x_test, y_test = _split(x, y, evaluation, stratify=task == CLASSIFICATION)
    return ArrayData(
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        task=task,
        input_shape=input_shape,
        classes=classes,
        class_names=table.class_names,
        features=list(map(str, table.X.columns)),
    )


def _split(x: np.ndarray, y: np.ndarray, evaluation: Split, stratify: bool):
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=evaluation.test_size, random_state=evaluation.seed, stratify=y if stratify else None
    )
    return x_train, y_train, x_test, y_test
