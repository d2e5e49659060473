"""GA, simulated annealing, tabu search and ACO (continuous ACO_R and ACS for the TSP).

Fixed seeds throughout; budgets are exact, so every comparison is at an equal number of
objective evaluations.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.metaheuristics import OPTIMIZERS, Space, minimize
from service.metaheuristics.base import Dimension
from service.optimize.aco_tsp import distances, solve_tsp, tour_length, two_opt_best
from service.optimize.functions import FUNCTIONS, evaluate

MINE = ["ga", "sa", "tabu", "aco"]


def benchmark(name: str, dims: int = 10):
    low, high = FUNCTIONS[name]
    keys = [f"x{i}" for i in range(dims)]
    return Space.box(dims, low, high), lambda p: evaluate(name, np.array([p[k] for k in keys]))


def run(strategy: str, function: str, budget: int, seed: int = 0, **params):
    space, objective = benchmark(function)
    optimizer = OPTIMIZERS[strategy](space, budget, seed=seed, **params)
    return minimize(optimizer, objective, budget)


@pytest.mark.parametrize("strategy", MINE)
def test_registered_with_documented_params(strategy):
    cls = OPTIMIZERS[strategy]
    assert cls.name == strategy
    assert cls.PARAMS and all(len(v) == 2 and isinstance(v[1], str) for v in cls.PARAMS.values())


@pytest.mark.parametrize("strategy,threshold", [("ga", 1e-2), ("sa", 1e-1), ("tabu", 1e-1), ("aco", 1e-2)])
def test_sphere_10d(strategy, threshold):
    result = run(strategy, "sphere", 5000)
    assert result.evaluations == 5000
    assert result.best_value < threshold


def test_ga_beats_random_search_on_rastrigin_for_each_seed():
    # Compared seed by seed (not only the median): same seed, same budget.
    for seed in range(5):
        ga = run("ga", "rastrigin", 5000, seed=seed).best_value
        rs = run("random", "rastrigin", 5000, seed=seed).best_value
        assert ga < rs, (seed, ga, rs)


@pytest.mark.parametrize("strategy", MINE)
@pytest.mark.parametrize("budget", [1, 137, 500])
def test_exact_evaluation_count(strategy, budget):
    # 137 is a multiple of no population or batch size used here.
    space, objective = benchmark("sphere")
    calls = []
    result = minimize(OPTIMIZERS[strategy](space, budget, seed=1), lambda p: calls.append(1) or objective(p), budget)
    assert result.evaluations == budget == len(calls) == len(result.curve)
    assert all(a >= b for a, b in zip(result.curve, result.curve[1:]))


@pytest.mark.parametrize("strategy", MINE)
@pytest.mark.parametrize("k", [0, 1, 7, 73])
def test_should_stop_between_evaluations(strategy, k):
    space, objective = benchmark("sphere")
    calls = []
    result = minimize(
        OPTIMIZERS[strategy](space, 1000, seed=2),
        lambda p: calls.append(1) or objective(p),
        1000,
        should_stop=lambda: len(calls) >= k,
    )
    assert len(calls) == k == result.evaluations


@pytest.mark.parametrize("strategy", MINE)
def test_ask_never_returns_more_than_n_and_slices_resume(strategy):
    space, objective = benchmark("sphere", dims=4)

    def drive(sizes):
        opt, points = OPTIMIZERS[strategy](space, 400, seed=3), []
        while len(points) < 400:
            n = sizes()
            xs = np.atleast_2d(opt.ask(n))
            assert 1 <= len(xs) <= n and xs.shape[1] == 4
            assert np.all((xs >= 0) & (xs <= 1))
            opt.tell(xs, np.array([objective(space.decode(x)) for x in xs]))
            points.extend(xs)
        return np.array(points[:400])

    rng = np.random.default_rng(0)
    # Handed out in slices of 1-7, a population resumes where it stopped: same points, same order.
    assert np.array_equal(drive(lambda: int(rng.integers(1, 8))), drive(lambda: 1000))


@pytest.mark.parametrize("strategy", MINE)
def test_same_seed_same_result(strategy):
    a, b = run(strategy, "rastrigin", 300, seed=5), run(strategy, "rastrigin", 300, seed=5)
    assert a.curve == b.curve


@pytest.mark.parametrize("strategy", MINE)
def test_mixed_space(strategy):
    space = Space(
        (
            Dimension("layers", "int", 1, 8),
            Dimension("lr", "float", 1e-4, 1e-1, log=True),
            Dimension("activation", "categorical", choices=("relu", "tanh", "sigmoid")),
        )
    )
    seen = []

    def objective(p):
        seen.append(p)
        return (p["layers"] - 5) ** 2 + (math.log10(p["lr"]) + 2.5) ** 2 + (p["activation"] != "tanh")

    result = minimize(OPTIMIZERS[strategy](space, 500, seed=0), objective, 500)
    assert len(seen) == 500
    for p in seen:
        assert isinstance(p["layers"], int) and 1 <= p["layers"] <= 8
        # exp(log(high)) can land a rounding error above high (Dimension.decode does not clamp).
        assert isinstance(p["lr"], float) and 1e-4 * (1 - 1e-12) <= p["lr"] <= 1e-1 * (1 + 1e-12)
        assert p["activation"] in ("relu", "tanh", "sigmoid")
    best = result.best_point
    assert best["layers"] == 5 and best["activation"] == "tanh"
    assert abs(math.log10(best["lr"]) + 2.5) < 0.3  # within 0.3 decades of lr = 10^-2.5


def test_aco_tsp_within_ten_percent_of_multistart_two_opt():
    coords = np.random.default_rng(7).random((30, 2))
    ref_tour, ref_len = two_opt_best(coords, starts=50, seed=0)
    tour, length, curve = solve_tsp(coords, evaluations=2000, seed=0)
    assert sorted(tour) == list(range(30)) and sorted(ref_tour) == list(range(30))
    assert math.isclose(length, tour_length(distances(coords), tour))
    assert len(curve) == 2000 and curve[-1] == length
    assert all(a >= b for a, b in zip(curve, curve[1:]))
    assert length <= 1.10 * ref_len, length / ref_len


def test_aco_tsp_counts_tours_exactly():
    coords = np.random.default_rng(8).random((12, 2))
    for evaluations, ants in [(1, 10), (95, 10), (7, 3)]:
        tour, length, curve = solve_tsp(coords, evaluations, seed=1, ants=ants)
        assert len(curve) == evaluations and sorted(tour) == list(range(12))
    # With the optional 2-opt on each iteration's best, the tour count is still exact.
    tour, length, curve = solve_tsp(coords, 95, seed=1, local_search=True)
    assert len(curve) == 95 and sorted(tour) == list(range(12))
