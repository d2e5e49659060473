"""Bacterial foraging optimisation (Passino 2002), as an ask/tell state machine.

Every chemotactic step all bacteria tumble (a step of length C in a random direction) as one
batch, then the ones that improved keep swimming in that direction, again as one batch, for up
to Ns steps while they improve. After Nc chemotactic steps the healthier half (lowest sum of costs)
splits and replaces the other half; after Nre reproductions each bacterium is dispersed to a random
place with probability Ped; after Ned such events the cycle starts again while budget remains.
Cell-to-cell swarming (attractant/repellent) is left out: it only matters for the bacteria's
collective shape, and without it the bacteria are independent, so their moves batch cleanly.
Defaults are scaled for budgets of a few thousand evaluations (Passino used S=50, Nc=100).
"""

from __future__ import annotations

import numpy as np

from service.metaheuristics.base import BatchOptimizer


def _reflect(x: np.ndarray) -> np.ndarray:
    x = np.where(x < 0.0, -x, x)
    return np.clip(np.where(x > 1.0, 2.0 - x, x), 0.0, 1.0)


class BacterialForaging(BatchOptimizer):
    name = "bfo"
    PARAMS = {
        "bacteria": (10, "S, the number of bacteria (one batch per tumble); even"),
        "chemotactic_steps": (20, "Nc, chemotactic steps between reproductions"),
        "swim_length": (4, "Ns, the most swim steps after a tumble while the cost keeps falling"),
        "reproduction_steps": (4, "Nre, reproductions between elimination-dispersal events"),
        "elimination_events": (2, "Ned, elimination-dispersal events per cycle"),
        "elimination_probability": (0.25, "Ped, chance each bacterium is dispersed at such an event"),
        "step_size": (0.1, "C, the step length in the unit cube at the start"),
        "step_size_end": (1e-3, "C at the end of the budget, reached geometrically; = step_size keeps C fixed"),
    }
    BOUNDS = {
        "bacteria": (2, 10_000),
        "chemotactic_steps": (1, 10_000),
        "swim_length": (0, 1000),
        "reproduction_steps": (1, 1000),
        "elimination_events": (1, 1000),
        "elimination_probability": (0.0, 1.0),
        "step_size": (1e-9, 1.0),  # the decay divides by it
        "step_size_end": (0.0, 1.0),
    }

    def __init__(self, space, budget, seed=0, **params):
        super().__init__(space, budget, seed, **params)
        p = {k: self.params.get(k, default) for k, (default, _) in self.PARAMS.items()}
        self.S = max(2, int(p["bacteria"]) // 2 * 2)  # reproduction splits exactly half
        self.Nc, self.Nre, self.Ned = (
            max(1, int(p[k])) for k in ("chemotactic_steps", "reproduction_steps", "elimination_events")
        )
        self.Ns, self.Ped = max(0, int(p["swim_length"])), float(p["elimination_probability"])
        self.C0, self.C_end = float(p["step_size"]), float(p["step_size_end"])
        d = space.size
        self.P = self.rng.random((self.S, d))
        self.J = np.full(self.S, np.inf)
        self.unknown = np.ones(self.S, dtype=bool)  # cost not evaluated yet (new or dispersed)
        self.health = np.zeros(self.S)
        self.direction = np.zeros((self.S, d))
        self.j = self.k = self.l = 0  # chemotactic, reproduction, elimination-dispersal counters
        self.phase, self.swims = "evaluate", 0

    def _step_size(self) -> float:
        frac = min(self.told / max(self.budget, 1), 1.0)
        return self.C0 * (self.C_end / self.C0) ** frac

    def _propose(self) -> np.ndarray:
        batch, self._who = self._proposal()
        return batch

    def _proposal(self) -> tuple[np.ndarray, np.ndarray]:
        if self.phase == "evaluate":  # new or dispersed bacteria whose cost is unknown
            who = np.flatnonzero(self.unknown)
            return self.P[who].copy(), who
        if self.phase == "tumble":
            who = np.arange(self.S)
            delta = self.rng.uniform(-1.0, 1.0, self.P.shape)
            self.direction = delta / np.linalg.norm(delta, axis=1, keepdims=True)
        else:  # swim: only those whose last move lowered the cost
            who = self._swimming
        return _reflect(self.P[who] + self._step_size() * self.direction[who]), who

    def _update(self, xs: np.ndarray, values: np.ndarray) -> None:
        who = self._who
        if self.phase == "evaluate":
            self.J[who], self.unknown[who] = values, False
            self.phase = "tumble"
        elif self.phase == "tumble":
            # A tumble is always taken (it is the random part of the walk); swimming needs improvement.
            improved = values < self.J
            self.P, self.J = xs, values
            self._swimming, self.swims = np.flatnonzero(improved), 0
            self.phase = "swim"
        else:
            improved = values < self.J[who]
            # A swim step that does not lower the cost is undone, so the bacterium ends at its best spot.
            self.P[who[improved]], self.J[who[improved]] = xs[improved], values[improved]
            self._swimming, self.swims = who[improved], self.swims + 1
        if self.phase == "swim" and (self.swims >= self.Ns or len(self._swimming) == 0):
            self._end_chemotactic_step()

    def _end_chemotactic_step(self) -> None:
        self.health += self.J
        self.phase, self.j = "tumble", self.j + 1
        if self.j < self.Nc:
            return
        # Reproduction: the healthier half splits, each copy replacing one of the other half.
        order = np.argsort(self.health)
        half = self.S // 2
        self.P[order[half:]], self.J[order[half:]] = self.P[order[:half]], self.J[order[:half]]
        self.health[:] = 0.0
        self.j, self.k = 0, self.k + 1
        if self.k < self.Nre:
            return
        # Elimination-dispersal: random bacteria move to random places and must be evaluated anew.
        gone = self.rng.random(self.S) < self.Ped
        self.P[gone], self.unknown[gone] = self.rng.random((int(gone.sum()), self.space.size)), True
        self.k, self.l = 0, (self.l + 1) % self.Ned  # after Ned events the cycle starts over
        if gone.any():
            self.phase = "evaluate"
