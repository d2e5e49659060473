"""Test-set metrics shared by every trainer, computed with scikit-learn."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, mean_absolute_error, r2_score, root_mean_squared_error


def classification_metrics(y_true, y_pred) -> dict[str, Any]:
    labels = np.unique(np.concatenate([np.asarray(y_true), np.asarray(y_pred)]))
    # Every number below follows from the confusion matrix, computed as scikit-learn's
    # accuracy_score and precision_recall_fscore_support(zero_division=0) do, to the bit: one
    # check of the labels instead of their three (a search's trials each score a hold-out).
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    tp, support, predicted = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    precision, recall = _divide(tp, predicted), _divide(tp, support)
    f1 = _divide(2.0 * tp, support.astype(np.float64) + predicted)
    return {
        "accuracy": float(tp.sum() / matrix.sum()),
        # f1_score(average="macro") is this mean over the same labels.
        "f1_macro": float(np.mean(f1)),
        "per_class": {
            str(label): {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
        "confusion_matrix": {"labels": to_json(labels), "matrix": matrix.tolist()},
    }


def _divide(numerator, denominator) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    denominator = np.asarray(denominator, dtype=np.float64)
    zero = denominator == 0
    return np.where(zero, 0.0, np.asarray(numerator, dtype=np.float64) / np.where(zero, 1.0, denominator))


def regression_metrics(y_true, y_pred) -> dict[str, Any]:
    return {
        "r2": float(r2_score(y_true, y_pred)),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "rmse": float(root_mean_squared_error(y_true, y_pred)),
    }


def to_json(values) -> list[Any]:
    """numpy labels as plain JSON values (ints stay ints, strings stay strings)."""
    return np.asarray(values).tolist()
