"""The strategies' parameter schemas: defaults, bounds, errors, and bounds the algorithms can run at."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from service.core.errors import SpecError
from service.metaheuristics import OPTIMIZERS, Space, minimize
from service.metaheuristics.params import strategies_catalog, validate_params, validate_strategy_params
from service.optimize import aco_tsp
from service.optimize.spec import tsp_model

pytestmark = pytest.mark.fast  # the fast tier: no servers needed (tests/conftest.py)

NAMES = ["ga", "sa", "tabu", "aco", "pso", "bfo", "abc", "random"]


def error_field(strategy, params, field="search.params"):
    with pytest.raises(SpecError) as caught:
        validate_strategy_params(strategy, params, field)
    assert caught.value.status == 422
    return caught.value.field


def test_every_registered_strategy_has_a_schema():
    assert sorted(OPTIMIZERS) == sorted(NAMES)
    assert {s["name"] for s in strategies_catalog()} == set(NAMES)


@pytest.mark.parametrize("strategy", NAMES)
def test_defaults_fill_in_and_bounds_fit_them(strategy):
    cls = OPTIMIZERS[strategy]
    defaults = {name: default for name, (default, _) in cls.PARAMS.items()}
    assert validate_strategy_params(strategy, {}, "search.params") == defaults
    assert validate_strategy_params(strategy, defaults, "optimize.params") == defaults
    assert set(cls.BOUNDS) | set(cls.CHOICES) <= set(cls.PARAMS)
    for name, (default, _) in cls.PARAMS.items():
        if isinstance(default, (int, float)) or default is None:
            assert name in cls.BOUNDS, f"{strategy}.{name} has no bounds"
        low, high = cls.BOUNDS.get(name, (None, None))
        if default is not None and not isinstance(default, str):
            assert (low is None or low <= default) and (high is None or default <= high), name


@pytest.mark.parametrize("strategy", [n for n in NAMES if n != "random"])
def test_out_of_bounds_unknown_and_mistyped_params_name_the_field(strategy):
    cls = OPTIMIZERS[strategy]
    for name, (low, high) in cls.BOUNDS.items():
        if high is not None:
            assert error_field(strategy, {name: high * 2 + 1}) == f"search.params.{name}"
        if low is not None:
            assert error_field(strategy, {name: low - 1}) == f"search.params.{name}"
        assert error_field(strategy, {name: "0.5"}) == f"search.params.{name}"
        assert error_field(strategy, {name: True}) == f"search.params.{name}"
    assert error_field(strategy, {"nope": 1}) == "search.params.nope"


def test_specific_errors():
    assert error_field("ga", {"crossover_rate": 1.5}, "optimize.params") == "optimize.params.crossover_rate"
    assert error_field("ga", {"population": 2.5}) == "search.params.population"  # a whole number
    assert error_field("pso", {"topology": "star"}) == "search.params.topology"
    assert error_field("random", {"population": 10}) == "search.params.population"
    assert error_field("ga", [1, 2]) == "search.params"
    assert error_field("nope", {}) == "search.strategy"
    with pytest.raises(SpecError, match="choose one of"):
        validate_strategy_params("nope", {}, "params")
    # Whole numbers are fine where a float is asked for, and are stored as floats.
    assert validate_strategy_params("ga", {"crossover_rate": 1}, "p")["crossover_rate"] == 1.0
    assert validate_strategy_params("abc", {"limit": 7}, "p")["limit"] == 7
    assert validate_strategy_params("pso", {"w_end": 0.4}, "p")["w_end"] == 0.4


@pytest.mark.parametrize("strategy", [n for n in NAMES if n != "random"])
@pytest.mark.parametrize("end", [0, 1])
def test_the_algorithms_run_at_their_bounds(strategy, end):
    cls = OPTIMIZERS[strategy]
    params = {name: bounds[end] for name, bounds in cls.BOUNDS.items() if bounds[end] is not None}
    params = validate_strategy_params(strategy, params, "p")
    space = Space.box(3, -5.12, 5.12)
    result = minimize(cls(space, 300, seed=0, **params), lambda p: sum(v * v for v in p.values()), 300)
    assert result.evaluations == 300 and np.isfinite(result.best_value)


def test_tsp_schema_matches_solve_tsp():
    signature = inspect.signature(aco_tsp.solve_tsp).parameters
    defaults = validate_params(tsp_model(), {}, "optimize.params")
    assert defaults == {name: signature[name].default for name in aco_tsp.PARAMS}
    with pytest.raises(SpecError) as caught:
        validate_params(tsp_model(), {"q0": 2}, "optimize.params")
    assert caught.value.field == "optimize.params.q0"


def test_catalog_describes_every_parameter_with_bounds():
    catalog = {s["name"]: s for s in strategies_catalog()}
    assert all(s["title"] and not s["title"].endswith(".") for s in catalog.values())
    assert catalog["random"]["parameters"] == []
    ga = {p["name"]: p for p in catalog["ga"]["parameters"]}
    assert ga["crossover_rate"]["default"] == 0.9
    assert ga["crossover_rate"]["accepts"] == [{"type": "number", "minimum": 0.0, "maximum": 1.0}]
    assert ga["population"]["accepts"] == [{"type": "integer", "minimum": 4, "maximum": 10000}]
    assert {"type": "null"} in ga["mutation_rate"]["accepts"]
    topology = {p["name"]: p for p in catalog["pso"]["parameters"]}["topology"]
    assert topology["accepts"] == [{"type": "choice", "choices": ["global", "ring"]}]
