"""Particle swarm optimisation (Kennedy & Eberhart 1995; inertia weight after Shi & Eberhart 1998).

Synchronous PSO: the whole swarm is one batch, so it can be evaluated in parallel; personal and
neighbourhood bests are updated once the batch is complete.
"""

from __future__ import annotations

import numpy as np

from service.metaheuristics.base import BatchOptimizer


class ParticleSwarm(BatchOptimizer):
    name = "pso"
    PARAMS = {
        "swarm_size": (20, "number of particles (one batch)"),
        "w": (0.7298, "inertia weight (at the start when w_end is set)"),
        "w_end": (None, "if set, w decreases linearly to this value over the budget (e.g. 0.9 -> 0.4)"),
        "c1": (1.49618, "cognitive coefficient: pull towards the particle's own best"),
        "c2": (1.49618, "social coefficient: pull towards the neighbourhood best"),
        "v_max": (0.2, "velocity clamp per coordinate, as a fraction of the unit range"),
        "topology": ("global", "'global' (gbest) or 'ring' (lbest with the two index neighbours)"),
    }
    BOUNDS = {
        "swarm_size": (2, 10_000),
        "w": (0.0, 1.0),  # w >= 1 lets velocities grow without bound
        "w_end": (0.0, 1.0),
        "c1": (0.0, 4.0),  # Clerc & Kennedy's analysis: c1 + c2 up to about 4
        "c2": (0.0, 4.0),
        "v_max": (0.0, 1.0),
    }
    CHOICES = {"topology": ("global", "ring")}

    def __init__(self, space, budget, seed=0, **params):
        super().__init__(space, budget, seed, **params)
        p = {k: self.params.get(k, default) for k, (default, _) in self.PARAMS.items()}
        self.size, self.w0, self.w_end = int(p["swarm_size"]), float(p["w"]), p["w_end"]
        self.c1, self.c2, self.v_max, self.topology = float(p["c1"]), float(p["c2"]), float(p["v_max"]), p["topology"]
        if self.topology not in ("global", "ring"):
            raise ValueError(f"unknown topology {self.topology!r}")
        d = space.size
        self.x = self.rng.random((self.size, d))
        self.v = self.rng.uniform(-self.v_max, self.v_max, (self.size, d))
        self.pbest, self.pbest_f = self.x.copy(), np.full(self.size, np.inf)

    def _propose(self) -> np.ndarray:
        return self.x.copy()  # the whole swarm

    def _update(self, xs: np.ndarray, values: np.ndarray) -> None:
        self._step(values)

    def _inertia(self) -> float:
        if self.w_end is None:
            return self.w0
        frac = min(self.told / max(self.budget, 1), 1.0)
        return self.w0 + (float(self.w_end) - self.w0) * frac

    def _neighbour_best(self) -> np.ndarray:
        if self.topology == "global":
            return np.broadcast_to(self.pbest[np.argmin(self.pbest_f)], self.x.shape)
        idx = np.arange(self.size)
        ring = np.stack([(idx - 1) % self.size, idx, (idx + 1) % self.size])  # 3 x S candidates
        best = ring[np.argmin(self.pbest_f[ring], axis=0), idx]
        return self.pbest[best]

    def _step(self, f: np.ndarray) -> None:
        better = f < self.pbest_f
        self.pbest[better], self.pbest_f[better] = self.x[better], f[better]
        r1, r2 = self.rng.random(self.x.shape), self.rng.random(self.x.shape)
        self.v = (
            self._inertia() * self.v
            + self.c1 * r1 * (self.pbest - self.x)
            + self.c2 * r2 * (self._neighbour_best() - self.x)
        )
        self.v = np.clip(self.v, -self.v_max, self.v_max)
        x = self.x + self.v
        # Absorbing walls: a particle that hits a bound stops there, so it does not stick pushing outwards.
        out = (x < 0.0) | (x > 1.0)
        self.v[out] = 0.0
        self.x = np.clip(x, 0.0, 1.0)
