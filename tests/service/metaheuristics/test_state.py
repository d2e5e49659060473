"""Every optimiser's state goes to JSON and back mid-search, and the restored optimiser asks
for exactly the points the original would have asked for."""

from __future__ import annotations

import json

import numpy as np
import pytest

from service.metaheuristics import OPTIMIZERS, Dimension, Space
from service.metaheuristics.state import dump_state, load_state

pytestmark = pytest.mark.fast

SPACE = Space(
    (
        Dimension("k", "int", 1, 30),
        Dimension("rate", "float", 1e-4, 1e-1, log=True),
        Dimension("kind", "categorical", choices=("a", "b", "c")),
        Dimension("x", "float", -5.0, 5.0),
    )
)


def objective(points: np.ndarray) -> np.ndarray:
    return np.array([float(np.sum((p - 0.3) ** 2)) for p in points])


def steps(optimizer, rounds: int, ask: int) -> list[np.ndarray]:
    asked = []
    for _ in range(rounds):
        xs = optimizer.ask(ask)
        if len(xs):
            optimizer.tell(xs, objective(xs))
        asked.append(np.array(xs))
    return asked


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("ask", [1, 3])  # one at a time, or slices that end mid-population
def test_a_restored_optimiser_continues_exactly(name, ask):
    original = OPTIMIZERS[name](SPACE, 300, seed=7)
    steps(original, 17, ask)
    saved = json.loads(json.dumps(dump_state(original), allow_nan=False))  # plain JSON, no NaN or Infinity
    restored = load_state(OPTIMIZERS[name](SPACE, 300, seed=7), saved)
    for mine, theirs in zip(steps(original, 25, ask), steps(restored, 25, ask), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert restored.best_value == original.best_value


def test_attributes_the_state_cannot_hold_are_refused():
    optimizer = OPTIMIZERS["ga"](SPACE, 100, seed=0)
    optimizer.callback = lambda: None
    with pytest.raises(TypeError, match="function"):
        dump_state(optimizer)
