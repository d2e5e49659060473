"""A comparison as CSV: one row per item, columns id, name, status, its parameters, its final
metrics. Names and values can come from a job's own logging: a cell a spreadsheet would take
for a formula is written as text."""

from __future__ import annotations

import csv
import io
from typing import Any

from service.compare.comparison import ABSENT, Comparison

FIXED = ["id", "name", "status"]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def comparison_csv(comparison: Comparison) -> str:
    params, metrics = comparison.params, comparison.metrics
    # A parameter or metric named like a column already taken gets a prefixed name of its own.
    param_columns = [f"params.{name}" if name in FIXED else name for name in params]
    taken = {*FIXED, *param_columns}
    metric_columns = [f"metrics.{name}" if name in taken else name for name in metrics]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([_cell(name) for name in [*FIXED, *param_columns, *metric_columns]])
    for item in comparison.items:
        row = [item.id, item.name, item.status, *(item.params.get(name) for name in params)]
        finals = [comparison.final(item, name) for name in metrics]
        writer.writerow([_cell(value) for value in [*row, *(None if v is ABSENT else v for v in finals)]])
    return out.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"  # as the spec writes it
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _is_number(value):
        return "'" + value
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
