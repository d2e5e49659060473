"""ACO_R, ant colony optimisation for continuous domains (Socha & Dorigo 2008).

A solution archive of size k, sorted by value, stands in for the pheromone table. Each ant
picks an archive member l with weight exp(-(rank)^2 / (2 q^2 k^2)) (small q = greedy) and
samples every coordinate from a Gaussian centred on it, whose sd is xi times the mean distance
from that member to the rest of the archive: the archive contracting plays the role of
evaporation. The m new solutions replace the worst ones when they are better.
"""

from __future__ import annotations

import numpy as np

from service.metaheuristics.base import BatchOptimizer


class AntColonyR(BatchOptimizer):
    name = "aco"
    PARAMS = {
        "archive": (50, "archive size k (also the number of initial random solutions)"),
        "ants": (2, "ants m, i.e. new solutions per iteration"),
        "q": (1e-4, "locality: small q favours the best-ranked solutions"),
        "xi": (0.85, "width factor, like evaporation: larger = slower convergence"),
    }
    BOUNDS = {
        "archive": (2, 10_000),
        "ants": (1, 10_000),
        "q": (1e-6, 10.0),  # Socha & Dorigo tune q in 1e-4 .. 0.1; q = 0 divides by 0
        "xi": (0.0, 10.0),
    }

    def __init__(self, space, budget, seed=0, **params):
        super().__init__(space, budget, seed, **params)
        get = self.params.get
        self.k = max(2, int(get("archive", 50)))
        self.m = max(1, int(get("ants", 2)))
        self.q = float(get("q", 1e-4))
        self.xi = float(get("xi", 0.85))
        ranks = np.arange(self.k)
        weights = np.exp(-(ranks**2) / (2 * (self.q * self.k) ** 2))
        self.p = weights / weights.sum()
        self.archive: np.ndarray | None = None  # k x d, sorted by value
        self.values: np.ndarray | None = None

    def _propose(self) -> np.ndarray:
        if self.archive is None:
            return self.rng.random((self.k, self.space.size))
        guides = self.rng.choice(self.k, size=self.m, p=self.p)
        centre = self.archive[guides]  # m x d
        # sd per ant and coordinate: mean distance from the guide to the whole archive.
        spread = np.abs(self.archive[None, :, :] - centre[:, None, :]).sum(axis=1) / (self.k - 1)
        return np.clip(centre + self.rng.normal(size=centre.shape) * self.xi * spread, 0.0, 1.0)

    def _update(self, xs: np.ndarray, values: np.ndarray) -> None:
        if self.archive is not None:
            xs = np.vstack([self.archive, xs])
            values = np.concatenate([self.values, values])
        keep = np.argsort(values, kind="stable")[: self.k]
        self.archive, self.values = xs[keep], values[keep]
