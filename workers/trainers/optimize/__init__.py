"""Optimisation jobs: a metaheuristic on a benchmark function, or Ant Colony System on a TSP.

The outcome is a result, not a model. A stop request is honoured before the next evaluation.
Evaluations are cheap and every progress report is a database write, so reports are throttled.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from service.metaheuristics import OPTIMIZERS, Space, minimize
from service.optimize.aco_tsp import random_tours, solve_tsp
from service.optimize.functions import evaluate
from service.optimize.spec import ContinuousProblem, OptimizeRun, TspProblem
from service.optimize.tsp_instances import tsplib_length
from workers.trainers.base import Allotment, Cancelled, DataSource, JobResult, Reporter

MAX_CURVE = 10_000  # points of the convergence curve kept in the result
REPORTS = 100  # progress reports per job, at most
MIN_INTERVAL_S = 0.25  # and at most four a second


def load_data(run: OptimizeRun, source: DataSource) -> None:
    return None  # the spec is the whole problem


def train(run: OptimizeRun, data: None, report: Reporter, allotted: Allotment) -> JobResult:
    o = run.optimize
    progress = Progress(report, o.evaluations)
    stop = allotted.stop_requested
    result, curve = _tsp(o, stop, progress) if isinstance(o, TspProblem) else _continuous(o, stop, progress)
    progress.final(result["evaluations"], result["best_value"])
    result.update(downsample(curve))
    metrics = {"best_value": result["best_value"], "evaluations": result["evaluations"]}
    if "gap" in result:
        metrics["gap"] = result["gap"]
    return JobResult(result=result, metrics=metrics)


def _continuous(
    o: ContinuousProblem, stop: Callable[[], bool], progress: Progress
) -> tuple[dict[str, Any], list[float]]:
    space = Space.box(o.dimensions, *o.bounds)
    keys = [d.name for d in space.dims]
    best, calls = math.inf, 0

    def objective(point: dict[str, float]) -> float:
        nonlocal best, calls
        value = evaluate(o.function, np.array([point[k] for k in keys]))
        best, calls = min(best, value), calls + 1
        progress(calls, best)
        return value

    optimizer = OPTIMIZERS[o.strategy](space, o.evaluations, seed=o.seed, **o.params)
    found = minimize(optimizer, objective, o.evaluations, should_stop=stop)
    _stop_if_short(found.evaluations, o.evaluations)
    return {
        "best_value": found.best_value,
        "best_params": [float(found.best_point[k]) for k in keys],
        "evaluations": found.evaluations,
    }, found.curve


def _tsp(o: TspProblem, stop: Callable[[], bool], progress: Progress) -> tuple[dict[str, Any], list[float]]:
    solve = solve_tsp if o.strategy == "aco" else random_tours
    tour, length, curve = solve(
        np.array(o.cities, dtype=float),
        o.evaluations,
        seed=o.seed,
        should_stop=stop,
        on_tour=progress,
        **o.params,
    )
    _stop_if_short(len(curve), o.evaluations)
    result = {
        "best_value": length,
        "best_params": tour,
        "evaluations": len(curve),
        "instance": o.instance,
        "cities": len(o.cities),
    }
    if o.optimum:
        # The known optimum is in TSPLIB's metric (edges rounded), so the gap is measured in it too.
        result["optimum"] = o.optimum
        result["tsplib_length"] = tsplib_length(o.cities, tour)
        result["gap"] = (result["tsplib_length"] - o.optimum) / o.optimum
    return result, curve


def _stop_if_short(done: int, budget: int) -> None:
    # The loops end early only when asked to stop: the runner records the cancel or the time limit.
    if done < budget:
        raise Cancelled()


def downsample(curve: list[float]) -> dict[str, Any]:
    """At most MAX_CURVE points: each the best after `curve_step` more evaluations; the last is the final best."""
    step = max(math.ceil(len(curve) / MAX_CURVE), 1)
    kept = curve[step - 1 :: step]
    if len(curve) % step:
        kept.append(curve[-1])
    return {"curve": [float(v) for v in kept], "curve_step": step}


class Progress:
    """Reports evaluations and the best value so far, throttled to REPORTS a job and MIN_INTERVAL_S apart."""

    def __init__(self, report: Reporter, budget: int):
        self.report, self.budget = report, budget
        self.every = max(math.ceil(budget / REPORTS), 1)
        self.next, self.last, self.sent = self.every, -math.inf, 0

    def __call__(self, evaluations: int, best: float) -> None:
        if evaluations < self.next or time.monotonic() - self.last < MIN_INTERVAL_S:
            return
        self.next = (evaluations // self.every + 1) * self.every
        self._send(evaluations, best)

    def final(self, evaluations: int, best: float) -> None:
        if self.sent != evaluations:
            self._send(evaluations, best)

    def _send(self, evaluations: int, best: float) -> None:
        self.last, self.sent = time.monotonic(), evaluations
        self.report.progress(fraction=evaluations / self.budget, evaluations=evaluations, best_value=float(best))
        self.report.event("trial", {"evaluations": evaluations, "best_value": float(best)})
