"""Optimisation job specs (`optimize`): a metaheuristic on a benchmark function or a TSP.

There is no data set: the spec names the problem. The run (what is stored and what the
trainer receives) holds everything the trainer needs, a TSP's cities included, so a job
runs exactly the instance it was given. The checks are in service/optimize/validate.py.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from service.core.schema import Strict, describe_params
from service.jobs.spec import QUEUE_HELP, Run
from service.jobs.tiers import BATCH, TIER_HELP, Tier
from service.metaheuristics.params import params_model, strategies_catalog
from service.optimize import aco_tsp
from service.optimize.functions import FUNCTIONS
from service.optimize.tsp_instances import INSTANCES

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
    bounds: list[Bound] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="[low, high] for every coordinate; default the function's usual box",
    )
    params: Any = Field(default_factory=dict, description="The strategy's parameters")
    instance: str | None = Field(None, description="tsp: a named instance")
    cities: list[Annotated[list[Coordinate], Field(min_length=2, max_length=2)]] | None = Field(
        None, min_length=4, max_length=1000, description="tsp: your own cities as [[x, y], ...]"
    )


class OptimizeSpec(Strict):
    name: str | None = Field(None, min_length=1, max_length=255)
    optimize: OptimizeDef
    device: Literal["auto", "cpu", "gpu"] = "auto"
    queue: str | None = Field(None, min_length=1, max_length=64, description=QUEUE_HELP)
    tier: Tier = Field(BATCH, description=TIER_HELP)


class ContinuousProblem(Strict):
    """A metaheuristic on a benchmark function, as stored."""

    strategy: str
    function: str
    dimensions: int
    bounds: list[float]
    params: dict[str, Any]
    evaluations: int
    seed: int


class TspProblem(Strict):
    """Ant Colony System (or random tours) on a TSP, as stored: the cities themselves included."""

    strategy: str
    function: Literal["tsp"]
    instance: str | None
    cities: list[list[float]]
    optimum: int | float | None  # the known best tour length of a named instance
    params: dict[str, Any]
    evaluations: int
    seed: int


class OptimizeRun(Run):
    optimize: TspProblem | ContinuousProblem
    device: Literal["cpu"] = "cpu"


@cache
def tsp_model() -> type[BaseModel]:
    """Ant Colony System's arguments, for optimisation jobs on a TSP instance."""
    return params_model("acs_tsp", aco_tsp.PARAMS, aco_tsp.BOUNDS)


def catalog() -> dict[str, Any]:
    return {"strategies": strategies_catalog(), "functions": functions_catalog()}


def functions_catalog() -> list[dict[str, Any]]:
    """The problems an optimisation job can name, for GET /api/v1/algorithms."""
    described = [
        {"name": name, "title": FUNCTION_TITLES[name], "bounds": list(bounds), "minimum": 0.0}
        for name, bounds in FUNCTIONS.items()
    ]
    described.append(
        {
            "name": TSP,
            "title": "Travelling salesman: the shortest closed tour through all cities",
            "strategies": list(TSP_STRATEGIES),
            "instances": [
                {"name": i.name, "title": i.title, "cities": len(i.cities), "optimum": i.optimum}
                for i in INSTANCES.values()
            ],
            "aco_parameters": describe_params(tsp_model()),
        }
    )
    return described
