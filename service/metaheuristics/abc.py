"""Artificial bee colony (Karaboga 2005; Karaboga & Basturk 2007).

Half the colony are employed bees (one per food source), half are onlookers. Each phase is one
batch: the employed bees try a neighbour of every source, the onlookers try neighbours of sources
picked in proportion to their fitness, and a scout replaces the source exhausted longest (trials
above `limit`) by a random one.
"""

from __future__ import annotations

import numpy as np

from service.metaheuristics.base import BatchOptimizer


class ArtificialBeeColony(BatchOptimizer):
    name = "abc"
    PARAMS = {
        "colony_size": (20, "employed + onlooker bees; the number of food sources is half of it"),
        "limit": (None, "failed trials before a source is abandoned; default sources x dimensions"),
        "modification_rate": (0.0, "chance each further coordinate is perturbed too (Akay & Karaboga 2012); 0 = one"),
    }
    BOUNDS = {
        "colony_size": (4, 10_000),  # at least two food sources
        "limit": (1, 1_000_000),
        "modification_rate": (0.0, 1.0),
    }

    def __init__(self, space, budget, seed=0, **params):
        super().__init__(space, budget, seed, **params)
        p = {k: self.params.get(k, default) for k, (default, _) in self.PARAMS.items()}
        self.sources = max(int(p["colony_size"]) // 2, 2)  # a neighbour needs another source
        self.limit = int(p["limit"]) if p["limit"] is not None else self.sources * space.size
        self.mr = float(p["modification_rate"])
        self.x = self.rng.random((self.sources, space.size))
        self.f = np.full(self.sources, np.inf)
        self.trials = np.zeros(self.sources, dtype=int)
        self.phase = "init"

    # -- phases ---------------------------------------------------------------------------------
    def _propose(self) -> np.ndarray:
        batch, self._targets = self._proposal()
        return batch

    def _proposal(self) -> tuple[np.ndarray, np.ndarray]:
        if self.phase == "init":
            return self.x.copy(), np.arange(self.sources)
        if self.phase == "employed":
            targets = np.arange(self.sources)
        elif self.phase == "onlooker":
            targets = self.rng.choice(self.sources, self.sources, p=self._probabilities())
        else:  # scout: only when a source is exhausted, otherwise straight on to the employed bees
            worst = int(np.argmax(self.trials))
            if self.trials[worst] <= self.limit:
                self.phase = "employed"
                return self._proposal()
            return self.rng.random((1, self.space.size)), np.array([worst])
        return self._neighbours(targets), targets

    def _neighbours(self, targets: np.ndarray) -> np.ndarray:
        n, d = len(targets), self.space.size
        # Partner k != i, drawn from the other sources.
        partners = (targets + self.rng.integers(1, self.sources, n)) % self.sources
        mask = self.rng.random((n, d)) < self.mr
        mask[np.arange(n), self.rng.integers(0, d, n)] = True  # at least one coordinate moves
        phi = self.rng.uniform(-1.0, 1.0, (n, d))
        v = self.x[targets] + mask * phi * (self.x[targets] - self.x[partners])
        return np.clip(v, 0.0, 1.0)

    def _probabilities(self) -> np.ndarray | None:
        # Karaboga's fitness: 1/(1+f) for f >= 0, 1+|f| otherwise; works for any sign of f.
        with np.errstate(invalid="ignore"):
            fit = np.where(self.f >= 0, 1.0 / (1.0 + np.abs(self.f)), 1.0 + np.abs(self.f))
        fit = np.where(np.isfinite(fit), fit, 0.0)  # a NaN or -inf cost must not break the roulette
        return fit / fit.sum() if fit.sum() > 0 else None  # None: uniform choice

    def _update(self, xs: np.ndarray, values: np.ndarray) -> None:
        if self.phase in ("init", "scout"):
            self.x[self._targets], self.f[self._targets], self.trials[self._targets] = xs, values, 0
        else:
            # Greedy selection, in order: several onlookers may work on the same source.
            for i, v, fv in zip(self._targets, xs, values):
                if fv < self.f[i]:
                    self.x[i], self.f[i], self.trials[i] = v, fv, 0
                else:
                    self.trials[i] += 1
        self.phase = {"init": "employed", "employed": "onlooker", "onlooker": "scout", "scout": "employed"}[self.phase]
