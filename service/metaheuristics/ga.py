"""Real-coded genetic algorithm: tournament selection, SBX crossover, Gaussian mutation, elitism.

SBX is Deb & Agrawal (1995); the mutation scale shrinks geometrically over the budget so the
search ends fine-grained without a separate local search. Elites keep their known values and
are not evaluated again, so after the first generation each batch is `population - elites`.
"""

from __future__ import annotations

import numpy as np

from service.metaheuristics.base import BatchOptimizer


class GeneticAlgorithm(BatchOptimizer):
    name = "ga"
    PARAMS = {
        "population": (50, "individuals per generation"),
        "tournament": (3, "tournament size for parent selection"),
        "crossover_rate": (0.9, "probability that a pair of parents is recombined"),
        "eta_c": (15.0, "SBX distribution index (larger = children closer to parents)"),
        "mutation_rate": (None, "per-gene mutation probability; None = 1/d"),
        "mutation_scale": (0.3, "initial Gaussian mutation sd, as a fraction of each axis"),
        "final_scale": (0.001, "mutation sd reached at the end of the budget"),
        "elites": (2, "best individuals copied unchanged into the next generation"),
    }
    BOUNDS = {
        "population": (4, 10_000),
        "tournament": (1, 100),
        "crossover_rate": (0.0, 1.0),
        "eta_c": (0.0, 1000.0),  # Deb uses 2-20; 0 spreads children widest
        "mutation_rate": (0.0, 1.0),
        "mutation_scale": (1e-9, 1.0),  # a zero scale would divide in the geometric decay
        "final_scale": (1e-12, 1.0),
        "elites": (0, 1000),
    }

    def __init__(self, space, budget, seed=0, **params):
        super().__init__(space, budget, seed, **params)
        get = self.params.get
        d = space.size
        self.size = max(4, int(get("population", 50)))
        self.tournament = max(1, int(get("tournament", 3)))
        self.crossover_rate = float(get("crossover_rate", 0.9))
        self.eta_c = float(get("eta_c", 15.0))
        rate = get("mutation_rate", None)
        self.mutation_rate = 1.0 / d if rate is None else float(rate)
        self.scale0 = float(get("mutation_scale", 0.3))
        self.scale1 = float(get("final_scale", 0.001))
        self.n_elite = min(max(0, int(get("elites", 2))), self.size - 1)
        self.pop: np.ndarray | None = None  # current generation and its values
        self.fit: np.ndarray | None = None

    def _propose(self) -> np.ndarray:
        if self.pop is None:
            return self.rng.random((self.size, self.space.size))
        return self._offspring(self.size - self.n_elite)

    def _update(self, xs: np.ndarray, values: np.ndarray) -> None:
        if self.pop is None:
            self.pop, self.fit = xs, values
            return
        elite = np.argsort(self.fit)[: self.n_elite]
        self.pop = np.vstack([self.pop[elite], xs])
        self.fit = np.concatenate([self.fit[elite], values])

    def _select(self, count: int) -> np.ndarray:
        entrants = self.rng.integers(0, len(self.pop), (count, self.tournament))
        winners = entrants[np.arange(count), np.argmin(self.fit[entrants], axis=1)]
        return self.pop[winners]

    def _offspring(self, count: int) -> np.ndarray:
        pairs = (count + 1) // 2
        p1, p2 = self._select(pairs), self._select(pairs)
        c1, c2 = self._sbx(p1, p2)
        kids = np.vstack([c1, c2])[:count]
        # Mutation sd decays geometrically from scale0 to scale1 as the budget is spent.
        progress = min(self.told / max(self.budget, 1), 1.0)
        sd = self.scale0 * (self.scale1 / self.scale0) ** progress
        mask = self.rng.random(kids.shape) < self.mutation_rate
        kids = kids + mask * self.rng.normal(0.0, sd, kids.shape)
        return np.clip(kids, 0.0, 1.0)

    def _sbx(self, p1: np.ndarray, p2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = self.rng.random(p1.shape)
        e = 1.0 / (self.eta_c + 1.0)
        beta = np.where(u <= 0.5, (2 * u) ** e, (1 / (2 * (1 - u) + 1e-300)) ** e)
        # Per gene, half the time the parents' values pass through unchanged (Deb's convention).
        beta = np.where(self.rng.random(p1.shape) < 0.5, beta, 1.0)
        cross = (self.rng.random(len(p1)) < self.crossover_rate)[:, None]
        beta = np.where(cross, beta, 1.0)
        c1 = 0.5 * ((1 + beta) * p1 + (1 - beta) * p2)
        c2 = 0.5 * ((1 - beta) * p1 + (1 + beta) * p2)
        return c1, c2
