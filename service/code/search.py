"""How a hyperparameter search varies a code job: the values it tries go into the script's
arguments where they name them (`"args": ["--lr", "{lr}"]`), and a trial is scored by a
metric the script reports with `labtrain_job.report`."""

from __future__ import annotations

import copy
from typing import Any

from service.code.spec import CodeRun
from service.core.errors import SpecError
from service.jobs.families import SearchHooks, score_in


def check(run: CodeRun, name: str) -> None:
    if not any("{" + name + "}" in arg for arg in run.code.args):
        raise SpecError(
            f"the script's arguments never name {{{name}}}: put it where the value goes, e.g. "
            f'"args": ["--{name}", "{{{name}}}"]',
            field=f"search.space.{name}",
        )


def apply(payload: dict[str, Any], run: CodeRun, params: dict[str, Any]) -> dict[str, Any]:
    trial = copy.deepcopy(payload)
    args = trial["code"].get("args") or []
    for name, value in params.items():
        args = [arg.replace("{" + name + "}", str(value)) for arg in args]
    trial["code"]["args"] = args
    return trial


def metric(run: CodeRun, asked: str | None) -> str:
    if asked is None:
        raise SpecError(
            "a search over a code job needs search.metric: the name of a value the script reports "
            "with labtrain_job.report (e.g. val_accuracy)",
            field="search.metric",
        )
    return asked


def score(run: CodeRun, metrics: dict[str, Any] | None, name: str) -> float | None:
    return score_in(metrics, name)


HOOKS = SearchHooks(check=check, apply=apply, metric=metric, score=score)
