"""Tabular data sets: the scikit-learn built-ins and uploaded CSV files.

Both the API (to inspect an upload and check a spec against it) and the workers (to
train) read tables through this module, so they always agree on columns and kinds.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from service.data.tasks import CLASSIFICATION, REGRESSION

# name -> (sklearn loader name, task)
BUILTINS: dict[str, tuple[str, str]] = {
    "iris": ("load_iris", CLASSIFICATION),
    "wine": ("load_wine", CLASSIFICATION),
    "breast_cancer": ("load_breast_cancer", CLASSIFICATION),
    "digits": ("load_digits", CLASSIFICATION),
    "diabetes": ("load_diabetes", REGRESSION),
}

# An integer target with at most this many distinct values is taken as class labels.
MAX_INFERRED_CLASSES = 20


class DataError(ValueError):
    """The data cannot be used as asked; the message says why and what to do."""

    def __init__(self, message: str, field: str = "file"):
        super().__init__(message)
        self.field = field


@dataclass
class Table:
    """Features and (optionally) a target, with what each column is."""

    X: pd.DataFrame
    y: pd.Series | None
    target: str | None
    numeric: list[str]
    categorical: list[str]
    class_names: list[str] | None = None  # human names of integer labels (built-ins)


def load_builtin(name: str) -> Table:
    import sklearn.datasets

    loader_name, task = BUILTINS[name]
    bunch = getattr(sklearn.datasets, loader_name)(as_frame=True)
    X = bunch.data.astype(float)
    y = bunch.target.rename("target")
    class_names = [str(n) for n in bunch.target_names] if task == CLASSIFICATION else None
    return Table(X=X, y=y, target="target", numeric=list(X.columns), categorical=[], class_names=class_names)


@cache
def builtin_info(name: str) -> dict[str, Any]:
    table = load_builtin(name)
    info = describe_frame(pd.concat([table.X, table.y], axis=1))
    info.update(
        name=name,
        builtin=True,
        kind="table",
        task=BUILTINS[name][1],
        target="target",
        features=list(table.X.columns),
        classes=table.class_names,
    )
    return info


def read_csv_bytes(data: bytes) -> pd.DataFrame:
    """Parse an uploaded CSV, rejecting what is not a usable table."""
    if not data.strip():
        raise DataError("the file is empty; upload a CSV with a header row and at least two data rows")
    if b"\x00" in data[:8192]:
        raise DataError("the file is binary, not a CSV; upload a text file with comma-separated values")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError("the file is not UTF-8 text; save the CSV as UTF-8 and upload it again") from None
    try:
        frame = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise DataError(f"the file is not a readable CSV ({str(exc).splitlines()[0]})") from None
    return _check_frame(frame)


def read_csv_file(path: str | Path) -> pd.DataFrame:
    return read_csv_bytes(Path(path).read_bytes())


def _check_frame(frame: pd.DataFrame) -> pd.DataFrame:
    names = [str(c) for c in frame.columns]
    if any(n.startswith("Unnamed: ") for n in names):
        raise DataError("every column needs a name in the header row (a header cell is empty)")
    dupes = [c for c in frame.columns if "." in str(c) and str(c).rsplit(".", 1)[0] in frame.columns]
    if dupes:
        raise DataError(f"column names must be unique; the header repeats {str(dupes[0]).rsplit('.', 1)[0]!r}")
    if len(frame) < 2:
        raise DataError("the CSV needs a header row and at least two data rows")
    frame.columns = names
    return frame


def is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def describe_frame(frame: pd.DataFrame) -> dict[str, Any]:
    """Rows and, per column, its kind, missing count, distinct values and smallest value count."""
    columns = []
    for name in frame.columns:
        series = frame[name]
        counts = series.value_counts(dropna=True)
        columns.append(
            {
                "name": str(name),
                "kind": "numeric" if is_numeric(series) else "categorical",
                "integer": bool(is_numeric(series) and np.all(np.mod(series.dropna(), 1) == 0)),
                "missing": int(series.isna().sum()),
                "distinct": int(counts.size),
                "min_count": int(counts.min()) if counts.size else 0,
                "min": float(series.min()) if is_numeric(series) and counts.size else None,
            }
        )
    return {"rows": int(len(frame)), "columns": columns}


def infer_task(column: dict[str, Any]) -> str:
    """Classification for text labels or few integer values, regression otherwise."""
    if column["kind"] == "categorical":
        return CLASSIFICATION
    if column["integer"] and column["distinct"] <= MAX_INFERRED_CLASSES:
        return CLASSIFICATION
    return REGRESSION


def table_from_frame(frame: pd.DataFrame, target: str | None) -> Table:
    X = frame.drop(columns=[target]) if target else frame
    y = frame[target] if target else None
    numeric = [c for c in X.columns if is_numeric(X[c])]
    categorical = [c for c in X.columns if c not in numeric]
    X = X.astype({name: float for name in numeric})
    return Table(X=X, y=y, target=target, numeric=numeric, categorical=categorical)
