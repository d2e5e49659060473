"""Loading a job's data set, as the trainers want it."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from service.datasets import BUILTINS, Table, load_builtin, read_csv_file, table_from_frame


@lru_cache(maxsize=None)
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
