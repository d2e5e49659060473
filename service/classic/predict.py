"""Predict for scikit-learn models: JSON rows of features in, predictions (and class
probabilities and names) out. The model file is skops, loaded with an allowlist of
scikit-learn's classes (service/core/sklearn_files.py), so a predict never runs code from a file."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from service.core.errors import Conflict, SpecError
from service.core.sklearn_files import load_sklearn
from service.data.instances import MAX_INSTANCES
from service.data.tasks import CLASSIFICATION, DECOMPOSITION

if TYPE_CHECKING:  # a model's process imports this module: no database code for a type hint
    from service.core.orm import Model


class SklearnPredictor:
    def load(self, model: Model) -> Any:
        try:
            return load_sklearn(model.artifact_path)
        except ValueError as exc:  # a type outside the allowlist, or a file skops cannot read
            raise Conflict(f"the scikit-learn model cannot be served: {exc}", field="id") from None

    def predict(self, loaded: Any, model: Model, instances: Any, images: list[tuple[str, bytes]] | None) -> dict:
        if images is not None:
            raise SpecError(
                'this model takes rows of features as JSON {"instances": [[...]]}, not image files', field="file"
            )
        frame = tabular_frame(instances, model.input["features"], model.input.get("categorical", []))
        output = predict_tabular(loaded, frame, model.task)
        if model.class_names and model.task == CLASSIFICATION:
            output["labels"] = [model.class_names[int(p)] for p in output["predictions"]]
        return output


def tabular_frame(instances: Any, features: list[str], categorical: list[str]) -> pd.DataFrame:
    """Rows given as lists (in feature order) or objects (by feature name), checked cell by cell."""
    if not isinstance(instances, list) or not instances:
        raise SpecError("instances must be a non-empty list of rows", field="instances")
    if len(instances) > MAX_INSTANCES:
        raise SpecError(f"send at most {MAX_INSTANCES} instances per request", field="instances")
    rows = []
    for i, row in enumerate(instances):
        if isinstance(row, dict):
            unknown = sorted(set(row) - set(features))
            missing = [f for f in features if f not in row]
            if unknown or missing:
                raise SpecError(
                    f"instances[{i}]: "
                    + "; ".join(
                        filter(
                            None,
                            [
                                f"unknown features {unknown}" if unknown else "",
                                f"missing features {missing}" if missing else "",
                            ],
                        )
                    ),
                    field=f"instances.{i}",
                )
            row = [row[f] for f in features]
        if not isinstance(row, list):
            raise SpecError(
                f"instances[{i}] must be a list of {len(features)} values or an object keyed by feature name",
                field=f"instances.{i}",
            )
        if len(row) != len(features):
            raise SpecError(
                f"instances[{i}] has {len(row)} features; the model expects {len(features)} ({', '.join(features)})",
                field=f"instances.{i}",
                details={"expected": len(features), "got": len(row)},
            )
        rows.append([_cell(value, name in categorical, i, j) for j, (value, name) in enumerate(zip(row, features))])
    frame = pd.DataFrame(rows, columns=features)
    numeric = [f for f in features if f not in categorical]
    return frame.astype({name: float for name in numeric})


def _cell(value: Any, categorical: bool, i: int, j: int) -> Any:
    if value is None:
        return np.nan
    if categorical:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value) if not isinstance(value, str) else value
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return value
    kind = "text or a number" if categorical else "a finite number"
    raise SpecError(
        f"instances[{i}][{j}] must be {kind} (or null for a missing value), not {value!r}", field=f"instances.{i}.{j}"
    )


def predict_tabular(pipeline: Any, frame: pd.DataFrame, task: str) -> dict[str, Any]:
    try:
        if task == DECOMPOSITION:
            return {"predictions": pipeline.transform(frame).tolist()}
        output: dict[str, Any] = {"predictions": np.asarray(pipeline.predict(frame)).tolist()}
        if task == CLASSIFICATION and hasattr(pipeline, "predict_proba"):
            output["probabilities"] = np.asarray(pipeline.predict_proba(frame)).round(6).tolist()
    except ValueError as exc:
        # e.g. a missing value sent to a model trained without imputation
        raise SpecError(f"the model cannot use these instances: {exc}", field="instances") from None
    return output
