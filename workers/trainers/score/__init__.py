"""A competition's scoring job: the hidden test set is read here, in the worker; only its inputs
(never its labels) go, in batches, to the model's own process (service/serving: the limited,
unprivileged process that serves predict), or an uploaded predictions file is read. The answers
are checked (count, type, finite) and scored with the jobs' own metrics code (scores.py). The
result holds the two scores and row counts alone: no log line, event, error or result names a
label value, a prediction or a per-class figure.

A failure of the submission (the model failed, broke a limit or answered badly) is the job's
`submission_failed` and counts against the daily limit; any other failure is the service's."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from service.competitions.spec import SUBMISSION_FAILED, ScoreRun, task_of
from service.competitions.split import public_mask
from service.competitions.testset import TestSet, read_test_set
from service.core.config import Settings
from service.core.errors import ServiceError
from service.serving.process import ModelProcess, ModelUnavailable, ProcessLimits
from workers.trainers.base import Allotment, Cancelled, DataSource, JobFailed, JobResult, Reporter
from workers.trainers.scores import classification_metrics, regression_metrics

BATCH = 1000  # inputs per request to the model's process (predict takes at most 10,000)
SERVICE_FAILED = "scoring_error"


@dataclass
class ScoreData:
    test: TestSet
    settings: Settings


def load_data(run: ScoreRun, source: DataSource) -> ScoreData:
    try:
        test = read_test_set(run.test_path, run.target, run.id_column)
    except Exception as exc:  # never the reader's message: it may quote a cell
        raise JobFailed(SERVICE_FAILED, f"the test set could not be read ({type(exc).__name__})") from None
    return ScoreData(test, source.settings or Settings.from_env())


def train(run: ScoreRun, data: ScoreData, report: Reporter, allotted: Allotment) -> JobResult:
    try:
        return _score(run, data, report)
    except (Cancelled, JobFailed):
        raise
    except Exception as exc:  # the service's fault; its message could quote a label, so only its kind
        raise JobFailed(
            SERVICE_FAILED, f"the scoring failed on the service's side ({type(exc).__name__}); it does not count"
        ) from None


def _score(run: ScoreRun, data: ScoreData, report: Reporter) -> JobResult:
    test = data.test
    public = public_mask(run.competition, test.ids, run.public_fraction)
    report.event(
        "log",
        {"message": f"scoring {len(test.ids)} test rows ({int(public.sum())} public) by {run.metric}"},
    )
    if run.model is not None:
        predicted = model_predictions(run, data, report)
    else:
        predicted = list(pd.read_csv(run.predictions_path, keep_default_na=False)["prediction"])
    task = task_of(run.metric)
    values = checked(predicted, len(test.ids), task)
    truth = [_plain(v) for v in test.labels]
    if task == "classification":
        values, truth = [_label(v) for v in values], [_label(v) for v in truth]
    truth_array, values_array = np.asarray(truth), np.asarray(values)
    scores = {
        part: score(run.metric, truth_array[mask], values_array[mask])
        for part, mask in (("public_score", public), ("private_score", ~public))
    }
    report.progress(fraction=1.0)
    rows = {"public": int(public.sum()), "private": int((~public).sum())}
    return JobResult(result={**scores, "metric": run.metric, "rows": rows}, metrics={})


def model_process(run: ScoreRun, settings: Settings) -> ModelProcess:
    """The model's own process, as predict starts it: the model file alone in its sandbox."""
    return ModelProcess(
        run.model.predictor, run.model.fields, Path(run.model.path), ProcessLimits.from_settings(settings)
    )


def model_predictions(run: ScoreRun, data: ScoreData, report: Reporter) -> list[Any]:
    frame = data.test.inputs[run.model.columns]
    rows = [[_cell(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    server = model_process(run, data.settings)
    answers: list[Any] = []
    try:
        server.start()
        for start in range(0, len(rows), BATCH):
            batch = rows[start : start + BATCH]
            output = server.predict(batch, None).get("predictions")
            if not isinstance(output, list) or len(output) != len(batch):
                raise JobFailed(SUBMISSION_FAILED, f"the model answered no list of {len(batch)} predictions")
            answers += output
            report.progress(fraction=min(0.99, len(answers) / max(1, len(rows))))
    except ModelUnavailable as exc:
        raise JobFailed(SERVICE_FAILED, f"{exc.message}; it does not count") from None
    except ServiceError as exc:
        raise JobFailed(SUBMISSION_FAILED, f"the model failed on the test inputs ({exc.code}): {exc.message}") from None
    finally:
        server.close()
    return answers


def checked(predicted: list[Any], expected: int, task: str) -> list[Any]:
    """The predictions, one plain value per test row; the message names positions, never values."""
    if len(predicted) != expected:
        raise JobFailed(SUBMISSION_FAILED, f"{len(predicted)} predictions for {expected} test rows")
    values = [_plain(v) for v in predicted]
    for index, value in enumerate(values):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if task == "regression" and not (number and math.isfinite(value)):
            raise JobFailed(SUBMISSION_FAILED, f"prediction {index} is not a finite number")
        if task == "classification" and not (isinstance(value, str) or (number and math.isfinite(value))):
            raise JobFailed(SUBMISSION_FAILED, f"prediction {index} is not a class label (text or a number)")
    return values


def score(metric: str, truth: np.ndarray, predicted: np.ndarray) -> float | None:
    """One number, by the jobs' metrics code; the per-class figures it also gives are dropped."""
    if task_of(metric) == "classification":
        found = classification_metrics(truth, predicted)
        value = found["accuracy" if metric == "accuracy" else "f1_macro"]
    else:
        found = regression_metrics(truth.astype(float), predicted.astype(float))
        value = found[metric]
    return float(value) if math.isfinite(value) else None


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _label(value: Any) -> str:
    """Class labels compared as text: 1, 1.0 and "1" are one class."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _cell(value: Any) -> Any:
    value = _plain(value)
    return None if isinstance(value, float) and math.isnan(value) else value
