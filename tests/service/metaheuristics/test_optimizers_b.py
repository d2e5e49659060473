"""Particle swarm, bacterial foraging and artificial bee colony: quality on benchmarks, the exact
evaluation budget, stopping between evaluations, whole-population batches and mixed spaces."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.metaheuristics import OPTIMIZERS, Space, minimize
from service.metaheuristics.base import Dimension
from service.optimize.functions import FUNCTIONS, evaluate

NAMES = ["pso", "bfo", "abc"]
BUDGET = 5000


def benchmark(name: str, dims: int = 10):
    low, high = FUNCTIONS[name]
    space = Space.box(dims, low, high)
    keys = [d.name for d in space.dims]
    return space, lambda point: evaluate(name, np.array([point[k] for k in keys]))


def run(strategy: str, function: str, seed: int, budget: int = BUDGET, **params) -> float:
    space, objective = benchmark(function)
    optimizer = OPTIMIZERS[strategy](space, budget, seed=seed, **params)
    return minimize(optimizer, objective, budget).best_value


@pytest.mark.parametrize("strategy, threshold", [("pso", 1e-4), ("abc", 1e-4), ("bfo", 1e-1)])
def test_sphere_10(strategy, threshold):
    assert run(strategy, "sphere", seed=1) < threshold


@pytest.mark.parametrize("strategy", ["pso", "abc"])
def test_rastrigin_10_beats_random_search(strategy):
    for seed in range(5):
        assert run(strategy, "rastrigin", seed) < run("random", "rastrigin", seed), f"seed {seed}"


@pytest.mark.parametrize("strategy", NAMES)
@pytest.mark.parametrize("budget", [1, 137, 1003])
def test_exact_budget(strategy, budget):
    space, objective = benchmark("rastrigin", 5)
    calls = []
    result = minimize(OPTIMIZERS[strategy](space, budget, seed=3), lambda p: calls.append(p) or objective(p), budget)
    assert result.evaluations == budget == len(calls) == len(result.curve)
    assert result.best_value == min(objective(p) for p in calls)


@pytest.mark.parametrize("strategy", NAMES)
@pytest.mark.parametrize("k", [0, 1, 13, 250])
def test_stop_between_evaluations(strategy, k):
    space, objective = benchmark("sphere", 4)
    calls = []
    result = minimize(
        OPTIMIZERS[strategy](space, 1000, seed=0),
        lambda p: calls.append(p) or objective(p),
        1000,
        should_stop=lambda: len(calls) >= k,
    )
    assert len(calls) == k == result.evaluations


@pytest.mark.parametrize(
    "strategy, size_param, expected",
    [
        ("pso", {}, 20),
        ("pso", {"swarm_size": 33}, 33),
        ("abc", {}, 10),
        ("abc", {"colony_size": 50}, 25),
        ("bfo", {}, 10),
        ("bfo", {"bacteria": 16}, 16),
    ],
)
def test_whole_population_is_asked_at_once(strategy, size_param, expected):
    space, objective = benchmark("sphere", 6)
    optimizer = OPTIMIZERS[strategy](space, 1000, seed=0, **size_param)
    xs = optimizer.ask(10_000)
    assert xs.shape == (expected, 6)
    assert np.all((xs >= 0) & (xs <= 1))
    optimizer.tell(xs, np.array([objective(space.decode(x)) for x in xs]))
    assert 1 <= len(optimizer.ask(10_000)) <= expected  # the next batch (ABC scouts come alone)


@pytest.mark.parametrize("strategy", NAMES)
def test_small_asks_continue_the_same_batch(strategy):
    """Asking 7 at a time walks through the same points as asking whole batches."""
    space, objective = benchmark("rastrigin", 5)

    def trace(chunk: int) -> np.ndarray:
        optimizer, points = OPTIMIZERS[strategy](space, 600, seed=4), []
        while len(points) < 600:
            xs = optimizer.ask(min(chunk, 600 - len(points)))
            assert 1 <= len(xs) <= chunk
            optimizer.tell(xs, np.array([objective(space.decode(x)) for x in xs]))
            points.extend(xs)
        return np.array(points)

    assert np.array_equal(trace(7), trace(10_000))


@pytest.mark.parametrize("strategy", NAMES)
def test_same_seed_same_run(strategy):
    assert run(strategy, "rastrigin", seed=9, budget=500) == run(strategy, "rastrigin", seed=9, budget=500)


# BFO walks locally with a shrinking step, and int / categorical dimensions are plateaus where
# a step rarely changes the value, so it gets a larger budget and only has to be near the optimum.
@pytest.mark.parametrize("strategy, budget, tolerance", [("pso", 300, 1e-2), ("abc", 300, 1e-2), ("bfo", 1000, 1.1)])
def test_mixed_space(strategy, budget, tolerance):
    space = Space(
        (
            Dimension("layers", "int", 1, 8),
            Dimension("lr", "float", 1e-5, 1e-1, log=True),
            Dimension("activation", "categorical", choices=("relu", "tanh", "sigmoid")),
        )
    )
    seen = []

    def cost(p):
        return (p["layers"] - 3) ** 2 + (math.log10(p["lr"]) + 3) ** 2 + (p["activation"] != "tanh")

    def objective(p):
        assert isinstance(p["layers"], int) and 1 <= p["layers"] <= 8
        # exp(log(...)) at the bounds may be off by a rounding error, hence the tolerance.
        assert 1e-5 * (1 - 1e-12) <= p["lr"] <= 1e-1 * (1 + 1e-12)
        assert p["activation"] in ("relu", "tanh", "sigmoid")
        seen.append(p)
        return cost(p)

    result = minimize(OPTIMIZERS[strategy](space, budget, seed=2), objective, budget)
    assert len(seen) == budget == result.evaluations
    assert result.best_value < tolerance
    assert result.best_point == min(seen, key=cost)


@pytest.mark.parametrize("strategy", NAMES)
def test_params_are_documented_and_used(strategy):
    cls = OPTIMIZERS[strategy]
    assert cls.PARAMS and all(isinstance(v, tuple) and len(v) == 2 and v[1] for v in cls.PARAMS.values())
    defaults = {k: v[0] for k, v in cls.PARAMS.items()}
    space, _ = benchmark("sphere", 3)
    explicit = run_points(cls(space, 200, seed=5, **defaults))
    assert np.array_equal(explicit, run_points(cls(space, 200, seed=5)))


def run_points(optimizer) -> np.ndarray:
    objective = benchmark("sphere", 3)[1]
    points = []
    while len(points) < 200:
        xs = optimizer.ask(200 - len(points))
        optimizer.tell(xs, np.array([objective(optimizer.space.decode(x)) for x in xs]))
        points.extend(xs)
    return np.array(points)


def test_pso_variants():
    """Ring topology and a linearly decreasing inertia weight (0.9 -> 0.4) both still converge."""
    assert run("pso", "sphere", seed=1, topology="ring") < 1e-3
    assert run("pso", "sphere", seed=1, w=0.9, w_end=0.4, c1=2.0, c2=2.0) < 1e-3
    with pytest.raises(ValueError):
        OPTIMIZERS["pso"](Space.box(2, 0, 1), 10, topology="star")


def test_bfo_fixed_step_size_is_passino():
    """With C fixed (no shrinking) BFO still improves on where it started, only more coarsely."""
    assert run("bfo", "sphere", seed=1, step_size_end=0.1) < run("random", "sphere", seed=1)
