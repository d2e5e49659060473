"""How a hyperparameter search varies a code job: the values it tries go into the script's
arguments where they name them (`"args": ["--lr", "{lr}"]`), or a notebook's parameters, and
a trial is scored by a metric the code reports with `labtrain_job.report`."""

from __future__ import annotations

import copy
from typing import Any

from service.code.spec import CodeRun
from service.code.validate import NOTEBOOK, is_parameter_name
from service.core.errors import SpecError
from service.jobs.families import SearchHooks, score_in


def check(run: CodeRun, name: str) -> None:
    if _in_args(run, name):
        return
    if run.code.entrypoint.endswith(NOTEBOOK):
        if not is_parameter_name(name):
            raise SpecError(
                f"{name!r} cannot be a notebook parameter: use a Python variable name", field=f"search.space.{name}"
            )
        return
    raise SpecError(
        f"the script's arguments never name {{{name}}}: put it where the value goes, e.g. "
        f'"args": ["--{name}", "{{{name}}}"]',
        field=f"search.space.{name}",
    )


def apply(payload: dict[str, Any], run: CodeRun, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's spec: each value where the arguments name it, else (a notebook) as its parameter."""
    trial = copy.deepcopy(payload)
    args = trial["code"].get("args") or []
    for name, value in params.items():
        if _in_args(run, name):
            args = [arg.replace("{" + name + "}", str(value)) for arg in args]
        else:
            trial["code"].setdefault("parameters", {})[name] = value
    trial["code"]["args"] = args
    return trial


def _in_args(run: CodeRun, name: str) -> bool:
    return any("{" + name + "}" in arg for arg in run.code.args)


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
