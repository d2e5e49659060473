"""Tabu search over a discretised unit cube.

Each iteration evaluates a neighbourhood of candidates around the current point and moves to
the best one that is not tabu, even when it is worse (that is how tabu search leaves a local
minimum). The cube is cut into cells of side `cell * step`; a visited cell stays tabu for
`tenure` iterations, and a tabu candidate is still taken if it beats the best ever found
(aspiration). When the best has not improved for `patience` iterations the step shrinks and
the search restarts from the best point, on a finer grid with an empty tabu list.
"""

from __future__ import annotations

import math

import numpy as np

from service.metaheuristics.base import BatchOptimizer


class TabuSearch(BatchOptimizer):
    name = "tabu"
    PARAMS = {
        "neighbours": (20, "candidates evaluated per iteration"),
        "step": (0.1, "initial neighbour sd, as a fraction of each axis"),
        "tenure": (10, "iterations a visited cell stays tabu"),
        "cell": (2.0, "cell side, in steps, for the tabu grid"),
        "patience": (5, "iterations without a new best before the step shrinks"),
        "shrink": (0.5, "factor applied to the step on stagnation"),
        "min_step": (1e-7, "lower bound on the step"),
    }
    BOUNDS = {
        "neighbours": (1, 10_000),
        "step": (1e-9, 1.0),  # the cell's name takes log(step)
        "tenure": (0, 10_000),
        "cell": (1e-3, 1000.0),
        "patience": (1, 10_000),
        "shrink": (0.0, 1.0),
        "min_step": (1e-12, 1.0),  # 0 would let the step underflow to 0 on a long run
    }

    def __init__(self, space, budget, seed=0, **params):
        super().__init__(space, budget, seed, **params)
        get = self.params.get
        self.width = max(1, int(get("neighbours", 20)))
        self.step = float(get("step", 0.1))
        self.tenure = max(0, int(get("tenure", 10)))
        self.cell = float(get("cell", 2.0))
        self.patience = max(1, int(get("patience", 5)))
        self.shrink = float(get("shrink", 0.5))
        self.min_step = float(get("min_step", 1e-7))
        self.x: np.ndarray | None = None
        self.fx = math.inf
        self.tabu: dict[tuple, int] = {}  # cell -> iteration until which it is tabu
        self.iteration = self.stale = 0
        self.tabu_hits = 0  # candidates refused as tabu, for inspection

    def _propose(self) -> np.ndarray:
        self._best_before = self.best_value  # for aspiration and stagnation, once told
        if self.x is None:
            return self.rng.random((1, self.space.size))
        moves = self.x + self.rng.normal(0.0, self.step, (self.width, self.space.size))
        return np.clip(moves, 0.0, 1.0)

    def _key(self, x: np.ndarray) -> tuple:
        # The grid follows the step, so the step's level is part of the cell's name.
        side = self.cell * self.step
        return (round(math.log(self.step), 6),) + tuple(np.floor(x / side).astype(int))

    def _update(self, xs: np.ndarray, values: np.ndarray) -> None:
        before_batch = self._best_before
        self.iteration += 1
        if self.x is None:
            self._move(xs[0], float(values[0]))
            return
        for i in np.argsort(values):  # if every candidate is tabu, stay put
            tabu = self.tabu.get(self._key(xs[i]), -1) >= self.iteration
            if not tabu or values[i] < before_batch:  # aspiration: a new best is always allowed
                self._move(xs[i], float(values[i]))
                break
            self.tabu_hits += 1
        # Stagnation: shrink the step and intensify around the best point.
        self.stale = 0 if self.best_value < before_batch else self.stale + 1
        if self.stale >= self.patience and self.step > self.min_step:
            self.step = max(self.step * self.shrink, self.min_step)
            self.stale = 0
            self.tabu.clear()
            self._move(self.best_x, self.best_value)

    def _move(self, x: np.ndarray, value: float) -> None:
        self.x, self.fx = np.array(x, dtype=float), value
        self.tabu[self._key(self.x)] = self.iteration + self.tenure
        if len(self.tabu) > 4 * self.tenure + 16:  # forget cells whose tenure ran out
            self.tabu = {k: v for k, v in self.tabu.items() if v >= self.iteration}
