"""Uniform random search: the baseline every heuristic must beat."""

from __future__ import annotations

import numpy as np

from service.metaheuristics.base import Optimizer


class RandomSearch(Optimizer):
    name = "random"

    def ask(self, n: int) -> np.ndarray:
        return self.rng.random((min(n, 64), self.space.size))

    def tell(self, xs: np.ndarray, values: np.ndarray) -> None:
        self._record(xs, values)
