"""Optimisation job specs (`optimize`): a metaheuristic on a benchmark function or a TSP.

There is no data set: the spec names the problem. The stored spec holds everything the
trainer needs, a TSP's cities included, so a job runs exactly the instance it was given.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from service.algorithms import describe_params
from service.errors import SpecError, spec_error_from
from service.optimizers import strategies
from service.optimizers.functions import FUNCTIONS
from service.optimizers.tsp_instances import INSTANCES
from service.specs import Strict, ValidatedJob
from service.strategies import tsp_model, validate_params, validate_strategy_params

TSP = "tsp"
TSP_STRATEGIES = ("aco", "random")  # Ant Colony System, and random tours as the baseline
DEFAULT_DIMENSIONS = 10

FUNCTION_TITLES = {
    "sphere": "Sum of squares: convex, one minimum",
    "rastrigin": "A sphere with a cosine ripple: a regular grid of local minima",
    "rosenbrock": "A long curved valley whose floor is easy to find and hard to follow",
    "ackley": "Nearly flat outside, one deep funnel at the origin, many small local minima",
    "griewank": "A wide bowl with a product of cosines: many local minima, fewer at higher dimensions",
}

# Finite and not so large that squared distances or function values overflow.
Coordinate = Annotated[float, Field(allow_inf_nan=False, ge=-1e9, le=1e9)]
Bound = Annotated[float, Field(allow_inf_nan=False, ge=-1e6, le=1e6)]


class OptimizeDef(Strict):
    strategy: str = Field(description="ga, sa, tabu, aco, pso, bfo, abc or random")
    function: str = Field(description="sphere, rastrigin, rosenbrock, ackley, griewank or tsp")
    dimensions: int | None = Field(None, ge=1, le=1000, description="Default 10; not for tsp")
    evaluations: int = Field(1000, ge=1, le=200_000, description="Objective evaluations (tours for tsp)")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    bounds: list[Bound] | None = Field(None, min_length=2, max_length=2,
                                       description="[low, high] for every coordinate; default the function's usual box")
    params: Any = Field(default_factory=dict, description="The strategy's parameters")
    instance: str | None = Field(None, description="tsp: a named instance")
    cities: list[Annotated[list[Coordinate], Field(min_length=2, max_length=2)]] | None = Field(
        None, min_length=4, max_length=1000, description="tsp: your own cities as [[x, y], ...]")


class OptimizeSpec(Strict):
    name: str | None = Field(None, min_length=1, max_length=255)
    optimize: OptimizeDef
    device: Literal["auto", "cpu", "gpu"] = "auto"


def validate_optimize(payload: dict[str, Any]) -> ValidatedJob:
    if payload.get("search") is not None:
        raise SpecError("an optimisation job is a search already and cannot carry one; remove search",
                        field="search")
    try:
        spec = OptimizeSpec.model_validate({k: v for k, v in payload.items() if k != "search"})
    except ValidationError as exc:
        raise spec_error_from(exc, OptimizeSpec) from None
    if spec.device == "gpu":
        raise SpecError("optimisation jobs run on the CPU; use device 'cpu' or 'auto'", field="device")
    o = spec.optimize
    if o.strategy not in strategies():
        raise SpecError(f"unknown strategy {o.strategy!r}; choose one of {', '.join(strategies())}",
                        field="optimize.strategy")
    if o.function != TSP and o.function not in FUNCTIONS:
        raise SpecError(f"unknown function {o.function!r}; choose one of {', '.join([*FUNCTIONS, TSP])}",
                        field="optimize.function")
    problem = _tsp(o) if o.function == TSP else _continuous(o)
    normalized = {
        "name": spec.name,
        "optimize": {"strategy": o.strategy, "function": o.function, **problem,
                     "evaluations": o.evaluations, "seed": o.seed},
        "device": "cpu",
    }
    return ValidatedJob(family="optimize", spec=normalized, queue="cpu", name=spec.name)


def _continuous(o: OptimizeDef) -> dict[str, Any]:
    for key in ("instance", "cities"):
        if getattr(o, key) is not None:
            raise SpecError(f"{key} is for function tsp; {o.function} takes dimensions and bounds",
                            field=f"optimize.{key}")
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
        raise SpecError(f"tsp is solved by aco (Ant Colony System), or by random tours as a baseline; "
                        f"not by {o.strategy}", field="optimize.strategy")
    for key in ("dimensions", "bounds"):
        if getattr(o, key) is not None:
            raise SpecError(f"{key} does not apply to tsp: the cities make the problem", field=f"optimize.{key}")
    if (o.instance is None) == (o.cities is None):
        raise SpecError(f"tsp takes either an instance ({', '.join(INSTANCES)}) or cities as [[x, y], ...]"
                        + (", not both" if o.instance is not None else ""),
                        field="optimize.cities" if o.cities is not None else "optimize.instance")
    optimum = None
    if o.instance is not None:
        if o.instance not in INSTANCES:
            raise SpecError(f"unknown instance {o.instance!r}; choose one of {', '.join(INSTANCES)}",
                            field="optimize.instance")
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
            raise SpecError(f"cities {first} and {i} are at the same place; give each city once",
                            field=f"optimize.cities.{i}")


def functions_catalog() -> list[dict[str, Any]]:
    """The problems an optimisation job can name, for GET /api/v1/algorithms."""
    described = [{"name": name, "title": FUNCTION_TITLES[name], "bounds": list(bounds), "minimum": 0.0}
                 for name, bounds in FUNCTIONS.items()]
    described.append({
        "name": TSP, "title": "Travelling salesman: the shortest closed tour through all cities",
        "strategies": list(TSP_STRATEGIES),
        "instances": [{"name": i.name, "title": i.title, "cities": len(i.cities), "optimum": i.optimum}
                      for i in INSTANCES.values()],
        "aco_parameters": describe_params(tsp_model()),
    })
    return described
