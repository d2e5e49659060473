"""The hidden test set as the API and the scoring job read it: its row ids, its inputs (every
column but the target) and, for the scoring job alone, its labels. No database code: the
scoring trainer imports it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from service.data.tables import read_csv_file


@dataclass
class TestSet:
    ids: list[str]
    inputs: pd.DataFrame  # without the target; with the id column where the file has one
    labels: pd.Series


def read_test_set(path: str | Path, target: str, id_column: str | None) -> TestSet:
    frame = read_csv_file(path)
    ids = [str(v) for v in frame[id_column]] if id_column else [str(i) for i in range(1, len(frame) + 1)]
    return TestSet(ids=ids, inputs=frame.drop(columns=[target]), labels=frame[target])


def inputs_csv(test: TestSet, id_column: str | None) -> bytes:
    """What students receive: an `id` column, then the inputs; never the target."""
    frame = test.inputs if id_column else test.inputs.assign(id=test.ids)
    ordered = ["id", *[c for c in frame.columns if c != "id"]]
    return frame[ordered].to_csv(index=False).encode()


def feature_columns(columns: list[str], id_column: str | None) -> list[str]:
    """The columns a model without named features takes, in file order: all but the id."""
    return [c for c in columns if c != id_column]
