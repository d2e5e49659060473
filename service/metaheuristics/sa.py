"""Simulated annealing with geometric cooling and Corana's adaptive step vector.

Corana et al. (1987): a move changes one coordinate i by a uniform draw in [-v_i, v_i]; after
`cycles` moves per coordinate, each v_i grows or shrinks to keep that coordinate's acceptance
near 0.4-0.6, so the steps narrow as the temperature falls (and axis by axis, which suits
separable and badly scaled problems). One-coordinate moves did much better here than
isotropic Gaussian ones on rastrigin and ackley at the same budget.

The start is the best of a small random sample whose spread also sets the initial temperature
(White 1984) unless `t0` is given. The temperature drops by `alpha` after each chain of
`chain` evaluations.
"""

from __future__ import annotations

import math

import numpy as np

from service.metaheuristics.base import BatchOptimizer


class SimulatedAnnealing(BatchOptimizer):
    name = "sa"
    PARAMS = {
        "t0": (None, "initial temperature; None = sd of the initial sample's values"),
        "alpha": (0.95, "geometric cooling factor applied after each chain"),
        "chain": (20, "evaluations per temperature level (Markov chain length)"),
        "step": (0.2, "initial step v_i per coordinate, as a fraction of the axis"),
        "cycles": (20, "moves per coordinate between step adjustments (Corana's N_S)"),
        "min_step": (1e-9, "lower bound on each step"),
        "init_samples": (10, "random points evaluated first; the best is the start"),
        "batch": (1, "neighbours proposed per ask; the best of them faces the Metropolis test"),
    }
    BOUNDS = {
        "t0": (0.0, None),  # 0 accepts improvements only
        "alpha": (0.0, 1.0),  # usual range 0.8-0.99
        "chain": (1, 100_000),
        "step": (1e-9, 1.0),
        "cycles": (1, 10_000),
        "min_step": (0.0, 1.0),
        "init_samples": (1, 10_000),
        "batch": (1, 1000),
    }

    def __init__(self, space, budget, seed=0, **params):
        super().__init__(space, budget, seed, **params)
        get = self.params.get
        self.t0 = get("t0", None)
        self.alpha = float(get("alpha", 0.95))
        self.chain = max(1, int(get("chain", 20)))
        self.steps = np.full(space.size, float(get("step", 0.2)))
        self.cycles = max(1, int(get("cycles", 20)))
        self.min_step = float(get("min_step", 1e-9))
        self.init = max(1, int(get("init_samples", 10)))
        self.width = max(1, int(get("batch", 1)))
        self.x: np.ndarray | None = None
        self.fx = math.inf
        self.temp = 0.0
        self.moves = 0  # evaluations in the current chain
        self.tried = np.zeros(space.size)  # per coordinate, since the last adjustment
        self.taken = np.zeros(space.size)
        self._axes = np.zeros(self.width, dtype=int)

    def _propose(self) -> np.ndarray:
        if self.x is None:
            return self.rng.random((self.init, self.space.size))
        self._axes = self.rng.integers(0, self.space.size, self.width)
        moves = np.repeat(self.x[None], self.width, axis=0)
        jumps = self.rng.uniform(-1, 1, self.width) * self.steps[self._axes]
        moves[np.arange(self.width), self._axes] += jumps
        return np.clip(moves, 0.0, 1.0)

    def _update(self, xs: np.ndarray, values: np.ndarray) -> None:
        i = int(np.argmin(values))
        if self.x is None:
            self.x, self.fx = xs[i], float(values[i])
            finite = values[np.isfinite(values)]
            spread = float(np.std(finite)) if finite.size > 1 else abs(self.fx)
            self.temp = float(self.t0) if self.t0 is not None else (spread or 1.0)
            return
        delta = float(values[i]) - self.fx
        np.add.at(self.tried, self._axes, 1)
        # Metropolis: always take improvements, worse moves with probability exp(-delta/T).
        if delta <= 0 or (self.temp > 0 and self.rng.random() < math.exp(-delta / self.temp)):
            self.x, self.fx = xs[i], float(values[i])
            self.taken[self._axes[i]] += 1
        if self.tried.sum() >= self.cycles * self.space.size:
            self._adjust_steps()
        self.moves += len(values)
        if self.moves >= self.chain:
            self.temp *= self.alpha
            self.moves = 0

    def _adjust_steps(self) -> None:
        # Corana's rule with c = 2: widen above 60 % acceptance, narrow below 40 %.
        ratio = self.taken / np.maximum(self.tried, 1)
        grow = 1 + 2 * np.clip(ratio - 0.6, 0, None) / 0.4
        shrink = 1 + 2 * np.clip(0.4 - ratio, 0, None) / 0.4
        self.steps = np.clip(self.steps * grow / shrink, self.min_step, 1.0)
        self.tried[:] = 0
        self.taken[:] = 0
