"""Optimisation jobs (`optimize`): spec checks through the API, runs, results, cancellation, catalog."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from service.core.errors import SpecError
from service.optimize import aco_tsp
from service.optimize.aco_tsp import distances, tour_length, two_opt_best
from service.optimize.functions import evaluate
from service.optimize.tsp_instances import INSTANCES, tsplib_length
from service.optimize.validate import validate_optimize
from tests.service.api.test_api_datasets_models import submit_and_run
from tests.support.api import assert_error
from tests.support.trainers import ListReporter
from workers.trainers import Allotment, Cancelled
from workers.trainers import optimize as optimize_trainer

pytestmark = pytest.mark.fast  # the fast tier: no servers needed (tests/conftest.py)

SPHERE_PSO = {
    "name": "sphere-pso",
    "optimize": {"strategy": "pso", "function": "sphere", "dimensions": 5, "evaluations": 2000, "seed": 1},
}
BERLIN_ACO = {"optimize": {"strategy": "aco", "function": "tsp", "instance": "berlin52", "evaluations": 2000}}

# TSPLIB's optimal tours (its .opt.tour files), 0-based.
BERLIN52_TOUR = [
    0,
    48,
    31,
    44,
    18,
    40,
    7,
    8,
    9,
    42,
    32,
    50,
    10,
    51,
    13,
    12,
    46,
    25,
    26,
    27,
    11,
    24,
    3,
    5,
    14,
    4,
    23,
    47,
    37,
    36,
    39,
    38,
    35,
    34,
    33,
    43,
    45,
    15,
    28,
    49,
    19,
    22,
    29,
    1,
    6,
    41,
    20,
    16,
    2,
    17,
    30,
    21,
]
EIL51_TOUR = [
    32,
    38,
    9,
    48,
    8,
    29,
    33,
    49,
    15,
    20,
    28,
    1,
    19,
    34,
    35,
    2,
    27,
    30,
    25,
    7,
    21,
    0,
    31,
    10,
    37,
    4,
    36,
    16,
    3,
    17,
    46,
    11,
    45,
    50,
    26,
    5,
    47,
    22,
    6,
    42,
    23,
    13,
    24,
    12,
    40,
    39,
    18,
    41,
    43,
    14,
    44,
]


def opt(**fields):
    return {"optimize": {"strategy": "pso", "function": "sphere", **fields}}


def tsp(**fields):
    return {"optimize": {"strategy": "aco", "function": "tsp", **fields}}


SQUARE = [[0, 0], [1, 0], [1, 1], [0, 1]]


@pytest.mark.parametrize(
    "spec,field",
    [
        (opt(strategy="nope"), "optimize.strategy"),
        (opt(strategy=3), "optimize.strategy"),
        ({"optimize": {"function": "sphere"}}, "optimize.strategy"),
        (opt(function="himmelblau"), "optimize.function"),
        (opt(dimensions=0), "optimize.dimensions"),
        (opt(dimensions=1001), "optimize.dimensions"),
        (opt(dimensions=2.0), "optimize.dimensions"),
        (opt(evaluations=200_001), "optimize.evaluations"),
        (opt(evaluations=0), "optimize.evaluations"),
        (opt(evaluations=True), "optimize.evaluations"),
        (opt(seed=-1), "optimize.seed"),
        (opt(params={"nope": 1}), "optimize.params.nope"),
        (opt(strategy="ga", params={"crossover_rate": 1.5}), "optimize.params.crossover_rate"),
        (opt(params={"topology": "star"}), "optimize.params.topology"),
        (opt(params=[1]), "optimize.params"),
        (opt(bounds=[1, 1]), "optimize.bounds"),
        (opt(bounds=[2, -2]), "optimize.bounds"),
        (opt(bounds=[0]), "optimize.bounds"),
        (opt(bounds=[0, 1e7]), "optimize.bounds.1"),
        (opt(bounds=[0, float("inf")]), "optimize.bounds.1"),
        (opt(instance="berlin52"), "optimize.instance"),
        (opt(cities=SQUARE), "optimize.cities"),
        (opt(colour="red"), "optimize.colour"),
        (tsp(instance="berlin52", strategy="ga"), "optimize.strategy"),
        (tsp(instance="berlin52", cities=SQUARE), "optimize.cities"),
        (tsp(), "optimize.instance"),
        (tsp(instance="berlin53"), "optimize.instance"),
        (tsp(instance="berlin52", dimensions=5), "optimize.dimensions"),
        (tsp(instance="berlin52", bounds=[0, 1]), "optimize.bounds"),
        (tsp(cities=SQUARE[:3]), "optimize.cities"),
        (tsp(cities=[[0, 0], [1, float("nan")], [1, 1], [0, 1]]), "optimize.cities.1.1"),
        (tsp(cities=[[0, 0, 0], [1, 0], [1, 1], [0, 1]]), "optimize.cities.0"),
        (tsp(cities=[[0, 0], [1, 0], [0, 0], [0, 1]]), "optimize.cities.2"),
        (tsp(cities=[[0, 0], [1, 0], [1, 1], [0, 1]] * 251), "optimize.cities"),
        (tsp(instance="eil51", params={"q0": 2}), "optimize.params.q0"),
        (tsp(instance="eil51", params={"archive": 50}), "optimize.params.archive"),  # ACO_R's, not ACS's
        (tsp(instance="eil51", strategy="random", params={"ants": 5}), "optimize.params.ants"),
        ({**opt(), "device": "gpu"}, "device"),
        ({**opt(), "dataset": "iris"}, "dataset"),
        ({**opt(), "name": ""}, "name"),
        ({"optimize": "sphere"}, "optimize"),
    ],
)
def test_invalid_optimize_specs_are_422_naming_the_field(client, alice, spec, field):
    error = assert_error(client.post("/api/v1/jobs", json=spec, headers=alice), 422, field)
    assert error["message"]
    assert client.get("/api/v1/jobs", headers=alice).get_json()["items"] == []


def test_an_optimisation_cannot_carry_a_search():
    with pytest.raises(SpecError) as caught:
        validate_optimize({**opt(), "search": {"strategy": "ga"}})
    assert caught.value.field == "search" and caught.value.status == 422


def test_the_stored_spec_is_complete():
    spec = validate_optimize(opt(strategy="ga")).spec["optimize"]
    assert spec["dimensions"] == 10 and spec["bounds"] == [-5.12, 5.12] and spec["evaluations"] == 1000
    assert spec["params"]["population"] == 50 and spec["params"]["mutation_rate"] is None
    validated = validate_optimize(tsp(instance="eil51"))
    assert validated.queue == "cpu" and validated.family == "optimize"
    o = validated.spec["optimize"]
    assert o["instance"] == "eil51" and o["optimum"] == 426 and len(o["cities"]) == 51
    assert o["params"]["ants"] == 10 and "dimensions" not in o
    own = validate_optimize(tsp(cities=SQUARE, strategy="random")).spec["optimize"]
    assert own["instance"] is None and own["optimum"] is None and own["params"] == {}


def test_sphere_with_pso_succeeds_with_a_result_and_no_model(client, alice, run_queued):
    job = submit_and_run(client, alice, run_queued, SPHERE_PSO)
    assert job["status"] == "succeeded" and job["family"] == "optimize" and job["queue"] == "cpu"
    result = job["result"]
    assert "model_id" not in result
    curve, best = result["curve"], result["best_value"]
    assert result["evaluations"] == 2000 == len(curve) and result["curve_step"] == 1
    assert all(b <= a for a, b in zip(curve, curve[1:]))
    assert best < 1e-4 and best == curve[-1]
    assert len(result["best_params"]) == 5
    assert evaluate("sphere", np.array(result["best_params"])) == best
    assert job["metrics"] == {"best_value": best, "evaluations": 2000}
    assert job["progress"]["fraction"] == 1.0 and job["progress"]["evaluations"] == 2000
    assert job["progress"]["best_value"] == best
    events = client.get(f"/api/v1/jobs/{job['id']}/events", headers=alice).get_json()["items"]
    trials = [e["data"] for e in events if e["type"] == "trial"]
    assert 1 <= len(trials) <= 101 and trials[-1] == {"evaluations": 2000, "best_value": best}
    assert events[-1]["data"]["status"] == "succeeded"
    assert client.get("/api/v1/models", headers=alice).get_json()["items"] == []
    no_model = client.get(f"/api/v1/models/{job['id']}", headers=alice)
    assert no_model.status_code == 409 and "optimisation job" in no_model.get_json()["error"]["message"]


def test_berlin52_with_ant_colony_system_comes_near_the_optimum(client, alice, run_queued):
    job = submit_and_run(client, alice, run_queued, BERLIN_ACO)
    assert job["status"] == "succeeded", job["error"]
    result = job["result"]
    tour, cities = result["best_params"], INSTANCES["berlin52"].cities
    assert sorted(tour) == list(range(52))
    assert math.isclose(tour_length(distances(cities), tour), result["best_value"], rel_tol=1e-12)
    assert result["instance"] == "berlin52" and result["cities"] == 52 and result["optimum"] == 7542
    assert result["tsplib_length"] == tsplib_length(cities, tour)
    assert 7542 <= result["tsplib_length"] <= 7542 * 1.10
    assert result["gap"] == (result["tsplib_length"] - 7542) / 7542 == job["metrics"]["gap"]
    assert len(result["curve"]) == 2000 and result["curve"][-1] == result["best_value"]


def test_own_cities_and_random_tours(client, alice, run_queued):
    job = submit_and_run(client, alice, run_queued, tsp(cities=SQUARE, evaluations=50, seed=3))
    assert job["status"] == "succeeded" and job["result"]["best_value"] == 4.0
    assert job["result"]["instance"] is None and "gap" not in job["result"]
    job = submit_and_run(client, alice, run_queued, tsp(instance="random30", strategy="random", evaluations=300))
    assert job["status"] == "succeeded" and sorted(job["result"]["best_params"]) == list(range(30))
    assert job["result"]["evaluations"] == 300


def test_the_named_instances_and_their_optima():
    assert len(INSTANCES["berlin52"].cities) == 52 and len(INSTANCES["eil51"].cities) == 51
    for name, tour in (("berlin52", BERLIN52_TOUR), ("eil51", EIL51_TOUR)):
        instance = INSTANCES[name]
        assert len(set(instance.cities)) == len(instance.cities)
        assert sorted(tour) == list(range(len(instance.cities)))
        assert tsplib_length(instance.cities, tour) == instance.optimum
        # 2-opt from random starts never beats the optimum, and gets within a few per cent of it.
        best, _ = two_opt_best(np.array(instance.cities), starts=20)
        assert instance.optimum <= tsplib_length(instance.cities, best) <= instance.optimum * 1.05


def test_a_long_curve_is_downsampled():
    assert optimize_trainer.downsample([1.0] * 10) == {"curve": [1.0] * 10, "curve_step": 1}
    curve = list(np.linspace(20_001, 1, 20_001))
    kept = optimize_trainer.downsample(curve)
    assert kept["curve_step"] == 3 and len(kept["curve"]) == 6667 <= 10_000
    assert kept["curve"][0] == curve[2] and kept["curve"][-1] == curve[-1]
    assert len(optimize_trainer.downsample([0.0] * 200_000)["curve"]) == 10_000


def stop_after(counter, limit) -> Allotment:
    """An allotment that says stop once `limit` evaluations have been made, as counted by `counter`."""
    return Allotment(stop=lambda: counter.calls >= limit)


class Counted:
    def __init__(self, function):
        self.function, self.calls = function, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.function(*args, **kwargs)


@pytest.mark.parametrize("strategy", ["pso", "ga", "sa", "random"])
@pytest.mark.parametrize("limit", [0, 37])
def test_a_stop_request_is_honoured_before_the_next_evaluation(monkeypatch, strategy, limit):
    counter = Counted(optimize_trainer.evaluate)
    monkeypatch.setattr(optimize_trainer, "evaluate", counter)
    run = validate_optimize(opt(strategy=strategy, evaluations=500)).run
    with pytest.raises(Cancelled):
        optimize_trainer.train(run, None, ListReporter(), stop_after(counter, limit))
    assert counter.calls == limit


@pytest.mark.parametrize("strategy", ["aco", "random"])
def test_a_stop_request_ends_a_tsp_before_the_next_tour(monkeypatch, strategy):
    counter = Counted(aco_tsp.tour_length)
    monkeypatch.setattr(aco_tsp, "tour_length", counter)
    run = validate_optimize(tsp(instance="eil51", strategy=strategy, evaluations=500)).run
    with pytest.raises(Cancelled):
        optimize_trainer.train(run, None, ListReporter(), stop_after(counter, 23))
    assert counter.calls == 23


def test_progress_is_throttled(monkeypatch):
    monkeypatch.setattr(optimize_trainer, "MIN_INTERVAL_S", 0.0)
    reporter = ListReporter()
    out = optimize_trainer.train(validate_optimize(opt(evaluations=5000)).run, None, reporter, Allotment())
    assert len(reporter.progress_calls) == 100 == len(reporter.events)
    assert [c["evaluations"] for c in reporter.progress_calls] == list(range(50, 5001, 50))
    assert all(t == "trial" for t, _ in reporter.events) and out.result["evaluations"] == 5000


def test_cancelling_a_running_optimisation_stops_it(client, alice, run_queued):
    # Slow on purpose: random search over 1000 dimensions takes minutes for its whole budget.
    spec = opt(strategy="random", function="rastrigin", dimensions=1000, evaluations=200_000)
    job_id = client.post("/api/v1/jobs", json=spec, headers=alice).get_json()["id"]
    runner = threading.Thread(target=run_queued, args=(job_id,))
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while client.get(f"/api/v1/jobs/{job_id}", headers=alice).get_json()["status"] != "running":
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(0.05)
        response = client.post(f"/api/v1/jobs/{job_id}/cancel", headers=alice)
        assert response.status_code == 202 and response.get_json()["status"] == "running"
    finally:
        runner.join(timeout=30)
    assert not runner.is_alive()
    job = client.get(f"/api/v1/jobs/{job_id}", headers=alice).get_json()
    assert job["status"] == "cancelled" and job["result"] is None
    assert job["progress"].get("evaluations", 0) < 200_000


def test_catalog_lists_strategies_and_problems(client, alice):
    optimize = client.get("/api/v1/algorithms", headers=alice).get_json()["optimize"]
    strategies = {s["name"]: s for s in optimize["strategies"]}
    assert set(strategies) == {"ga", "sa", "tabu", "aco", "pso", "bfo", "abc", "random"}
    assert all(s["title"] for s in strategies.values())
    assert all(strategies[name]["parameters"] for name in strategies if name != "random")
    functions = {f["name"]: f for f in optimize["functions"]}
    assert set(functions) == {"sphere", "rastrigin", "rosenbrock", "ackley", "griewank", "tsp"}
    assert functions["sphere"]["bounds"] == [-5.12, 5.12] and functions["rastrigin"]["title"]
    instances = {i["name"]: i for i in functions["tsp"]["instances"]}
    assert instances["berlin52"] == {
        "name": "berlin52",
        "title": instances["berlin52"]["title"],
        "cities": 52,
        "optimum": 7542,
    }
    assert instances["eil51"]["optimum"] == 426 and instances["random30"]["optimum"] is None
    assert {p["name"] for p in functions["tsp"]["aco_parameters"]} >= {"ants", "alpha", "beta", "q0"}
