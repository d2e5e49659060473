"""Checking a search at submit time.

The space is checked against what the job's family accepts by validating the job with each
bound and each choice put in: a bound the algorithm would refuse is a 422 naming it, e.g.
`search.space.n_neighbors.low`. What a trial may vary and how it is scored are the searched
family's (its SearchHooks in the registry).
"""

from __future__ import annotations

import math
from typing import Any

from service.core.errors import SpecError
from service.jobs import families, submission
from service.jobs.context import SubmitContext
from service.jobs.spec import ValidatedJob, parse_spec
from service.metaheuristics import METAHEURISTICS
from service.metaheuristics.params import validate_strategy_params
from service.search.spec import (
    MAX_GRID,
    NoParams,
    SearchDef,
    SearchPlan,
    SearchRun,
    SpaceDimension,
    TpeParams,
    default_direction,
    grid_values,
)


def validate_search(payload: dict[str, Any], ctx: SubmitContext) -> ValidatedJob:
    """The search job: the base spec (what each trial runs) validated as a job of its own,
    plus the normalized search."""
    base_payload = {key: value for key, value in payload.items() if key != "search"}
    base = submission.validate(ctx, base_payload)
    hooks = families.get(base.family).search
    if hooks is None:
        raise SpecError(f"a job of the {base.family} family cannot carry a search; remove search", field="search")
    search = parse_spec(SearchDef, payload["search"], prefix="search")
    space = {name: _check_dimension(name, dim) for name, dim in search.space.items()}
    for name in space:
        hooks.check(base.run, name)
    for name, dim in space.items():
        for where, value in _extremes(dim):
            try:
                submission.validate(ctx, hooks.apply(base_payload, base.run, {name: value}))
            except SpecError as exc:
                raise SpecError(
                    f"search.space.{name}: {name}={value!r} is not accepted: {exc.message}",
                    field=f"search.space.{name}.{where}",
                ) from None
    metric = hooks.metric(base.run, search.metric)
    direction = search.direction or default_direction(metric)
    trials = search.trials
    if search.strategy == "grid":
        trials = min(trials, _grid_size(space))
    plan = SearchPlan(
        strategy=search.strategy,
        space=space,
        trials=trials,
        metric=metric,
        direction=direction,
        parallel=search.parallel,
        seed=search.seed,
        params=strategy_params(search.strategy, search.params),
        base=base_payload,
        keep_models=search.keep_models,
    )
    run = SearchRun.model_validate({**base.spec, "search": plan.model_dump(mode="json"), "trial_family": base.family})
    return ValidatedJob(family="search", run=run, queue=base.queue, name=base.name, tier=base.tier)


def strategy_params(strategy: str, params: dict[str, Any]) -> dict[str, Any]:
    if strategy in METAHEURISTICS:
        return validate_strategy_params(strategy, params, "search.params")
    return parse_spec(TpeParams if strategy == "tpe" else NoParams, params, prefix="search.params").model_dump()


def _check_dimension(name: str, dim: SpaceDimension) -> dict[str, Any]:
    field = f"search.space.{name}"
    if dim.type == "categorical":
        if not dim.choices:
            raise SpecError("a categorical dimension needs a list of choices", field=f"{field}.choices")
        if dim.low is not None or dim.high is not None or dim.log or dim.step is not None:
            raise SpecError("a categorical dimension takes only choices", field=field)
        if len({repr(c) for c in dim.choices}) != len(dim.choices):
            raise SpecError("the choices repeat a value", field=f"{field}.choices")
        return {"type": "categorical", "choices": list(dim.choices)}
    if dim.choices is not None:
        raise SpecError(f"an {dim.type} dimension takes low and high, not choices", field=f"{field}.choices")
    for bound in ("low", "high"):
        value = getattr(dim, bound)
        if value is None:
            raise SpecError(f"an {dim.type} dimension needs {bound}", field=f"{field}.{bound}")
        if not math.isfinite(value):
            raise SpecError(f"{bound} must be a finite number", field=f"{field}.{bound}")
        if dim.type == "int" and value != int(value):
            raise SpecError(f"an int dimension needs a whole number for {bound}", field=f"{field}.{bound}")
    if dim.low >= dim.high:
        raise SpecError(f"low ({dim.low:g}) must be below high ({dim.high:g})", field=f"{field}.high")
    if dim.log and dim.low <= 0:
        raise SpecError("a log-scaled dimension needs low above 0", field=f"{field}.low")
    if dim.log and dim.step is not None:
        raise SpecError("a dimension is either log-scaled or stepped, not both", field=f"{field}.step")
    if dim.type == "int":
        if dim.step is not None and dim.step != int(dim.step):
            raise SpecError("an int dimension needs a whole step", field=f"{field}.step")
        return {
            "type": "int",
            "low": int(dim.low),
            "high": int(dim.high),
            "log": dim.log,
            "step": int(dim.step) if dim.step else None,
        }
    return {"type": "float", "low": float(dim.low), "high": float(dim.high), "log": dim.log, "step": dim.step}


def _extremes(dim: dict[str, Any]) -> list[tuple[str, Any]]:
    if dim["type"] == "categorical":
        return [(f"choices.{i}", choice) for i, choice in enumerate(dim["choices"])]
    return [("low", dim["low"]), ("high", dim["high"])]


def _grid_size(space: dict[str, dict[str, Any]]) -> int:
    size = 1
    for name, dim in space.items():
        if dim["type"] == "float" and dim["step"] is None:
            raise SpecError(
                "grid search needs a step for float dimensions (or make it categorical)",
                field=f"search.space.{name}.step",
            )
        size *= len(grid_values(dim))
        if size > MAX_GRID:
            raise SpecError(
                f"the grid has more than {MAX_GRID} points; use larger steps, fewer "
                "dimensions, or random, tpe or a metaheuristic",
                field="search.space",
            )
    return size
