"""Checking an optimisation job spec at submit time: the strategy, the problem and the
strategy's parameters."""

from __future__ import annotations

from typing import Any

from service.core.errors import SpecError
from service.jobs.context import SubmitContext
from service.jobs.spec import ValidatedJob, parse_spec
from service.lab.devices import place
from service.metaheuristics import OPTIMIZERS
from service.metaheuristics.params import validate_params, validate_strategy_params
from service.optimize.functions import FUNCTIONS
from service.optimize.spec import (
    DEFAULT_DIMENSIONS,
    TSP,
    TSP_STRATEGIES,
    ContinuousProblem,
    OptimizeDef,
    OptimizeRun,
    OptimizeSpec,
    TspProblem,
    tsp_model,
)
from service.optimize.tsp_instances import INSTANCES


def validate_optimize(payload: dict[str, Any], ctx: SubmitContext | None = None) -> ValidatedJob:
    if payload.get("search") is not None:
        raise SpecError("an optimisation job is a search already and cannot carry one; remove search", field="search")
    spec = parse_spec(OptimizeSpec, {k: v for k, v in payload.items() if k != "search"})
    if spec.device == "gpu":
        raise SpecError("optimisation jobs run on the CPU; use device 'cpu' or 'auto'", field="device")
    cpu_only = "optimisation jobs run on the CPU"
    queue = place(ctx, spec.device, spec.queue, cpu_only=cpu_only).queue if ctx is not None else "cpu"  # a spec alone
    o = spec.optimize
    if o.strategy not in OPTIMIZERS:
        raise SpecError(
            f"unknown strategy {o.strategy!r}; choose one of {', '.join(OPTIMIZERS)}", field="optimize.strategy"
        )
    if o.function != TSP and o.function not in FUNCTIONS:
        raise SpecError(
            f"unknown function {o.function!r}; choose one of {', '.join([*FUNCTIONS, TSP])}", field="optimize.function"
        )
    common = {"strategy": o.strategy, "function": o.function, "evaluations": o.evaluations, "seed": o.seed}
    problem = TspProblem(**common, **_tsp(o)) if o.function == TSP else ContinuousProblem(**common, **_continuous(o))
    run = OptimizeRun(name=spec.name, optimize=problem)
    return ValidatedJob(family="optimize", run=run, queue=queue, name=spec.name, tier=spec.tier)


def _continuous(o: OptimizeDef) -> dict[str, Any]:
    for key in ("instance", "cities"):
        if getattr(o, key) is not None:
            raise SpecError(
                f"{key} is for function tsp; {o.function} takes dimensions and bounds", field=f"optimize.{key}"
            )
    low, high = o.bounds or FUNCTIONS[o.function]
    if not low < high:
        raise SpecError(f"bounds must be [low, high] with low < high, not [{low}, {high}]", field="optimize.bounds")
    return {
        "dimensions": DEFAULT_DIMENSIONS if o.dimensions is None else o.dimensions,
        "bounds": [float(low), float(high)],
        "params": validate_strategy_params(o.strategy, o.params, "optimize.params"),
    }


def _tsp(o: OptimizeDef) -> dict[str, Any]:
    if o.strategy not in TSP_STRATEGIES:
        raise SpecError(
            f"tsp is solved by aco (Ant Colony System), or by random tours as a baseline; not by {o.strategy}",
            field="optimize.strategy",
        )
    for key in ("dimensions", "bounds"):
        if getattr(o, key) is not None:
            raise SpecError(f"{key} does not apply to tsp: the cities make the problem", field=f"optimize.{key}")
    if (o.instance is None) == (o.cities is None):
        raise SpecError(
            f"tsp takes either an instance ({', '.join(INSTANCES)}) or cities as [[x, y], ...]"
            + (", not both" if o.instance is not None else ""),
            field="optimize.cities" if o.cities is not None else "optimize.instance",
        )
    optimum = None
    if o.instance is not None:
        if o.instance not in INSTANCES:
            raise SpecError(
                f"unknown instance {o.instance!r}; choose one of {', '.join(INSTANCES)}", field="optimize.instance"
            )
        cities = [[float(x), float(y)] for x, y in INSTANCES[o.instance].cities]
        optimum = INSTANCES[o.instance].optimum
    else:
        cities = o.cities
        _check_distinct(cities)
    if o.strategy == "aco":
        params = validate_params(tsp_model(), o.params, "optimize.params")
    else:
        params = validate_strategy_params(o.strategy, o.params, "optimize.params")
    return {"instance": o.instance, "cities": cities, "optimum": optimum, "params": params}


def _check_distinct(cities: list[list[float]]) -> None:
    # Two cities at one place are 0 apart, and ACS's closeness 1/distance would be infinite.
    seen: dict[tuple[float, float], int] = {}
    for i, (x, y) in enumerate(cities):
        first = seen.setdefault((x, y), i)
        if first != i:
            raise SpecError(
                f"cities {first} and {i} are at the same place; give each city once", field=f"optimize.cities.{i}"
            )
