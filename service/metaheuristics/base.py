"""The search space, the ask/tell contract and the evaluation loop."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Dimension:
    name: str
    type: str  # int | float | categorical
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    choices: tuple[Any, ...] = ()

    def decode(self, u: float) -> Any:
        u = min(max(float(u), 0.0), 1.0)
        if self.type == "categorical":
            return self.choices[min(int(u * len(self.choices)), len(self.choices) - 1)]
        if self.log:
            value = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            value = self.low + u * (self.high - self.low)
        if self.type == "int":
            return int(min(max(round(value), self.low), self.high))
        return min(max(value, self.low), self.high)  # exp/log rounding can step just outside

    def encode(self, value: Any) -> float:
        if self.type == "categorical":
            return (self.choices.index(value) + 0.5) / len(self.choices)
        if self.log:
            return (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (value - self.low) / (self.high - self.low) if self.high > self.low else 0.5


@dataclass(frozen=True)
class Space:
    dims: tuple[Dimension, ...]

    @property
    def size(self) -> int:
        return len(self.dims)

    def decode(self, u: np.ndarray) -> dict[str, Any]:
        return {d.name: d.decode(x) for d, x in zip(self.dims, u)}

    def encode(self, point: dict[str, Any]) -> np.ndarray:
        return np.array([d.encode(point[d.name]) for d in self.dims])

    @classmethod
    def box(cls, dimensions: int, low: float, high: float) -> Space:
        """A continuous box, as the benchmark functions take: x0 .. x{n-1} in [low, high]."""
        return cls(tuple(Dimension(f"x{i}", "float", low, high) for i in range(dimensions)))


class Optimizer:
    """Ask for unit vectors to evaluate, tell their values (lower is better).

    `ask(n)` returns at most n vectors (a whole population where the algorithm has one),
    so a caller can hold the evaluation budget exactly and stop between any two.
    """

    name = "base"
    # Tunable parameters: name -> (default, description). BOUNDS holds each numeric one's
    # inclusive (low, high), None for no bound, and CHOICES a text one's allowed values; the
    # job specs check them (service/metaheuristics/params.py), the constructors only clamp what would break.
    PARAMS: dict[str, tuple[Any, str]] = {}
    BOUNDS: dict[str, tuple[float | None, float | None]] = {}
    CHOICES: dict[str, tuple[str, ...]] = {}

    def __init__(self, space: Space, budget: int, seed: int = 0, **params: Any):
        self.space, self.budget = space, budget
        self.rng = np.random.default_rng(seed)
        self.params = params
        self.best_x: np.ndarray | None = None
        self.best_value = math.inf

    def ask(self, n: int) -> np.ndarray:
        raise NotImplementedError

    def tell(self, xs: np.ndarray, values: np.ndarray) -> None:
        raise NotImplementedError

    def _record(self, xs: np.ndarray, values: np.ndarray) -> None:
        index = int(np.argmin(values))
        if values[index] < self.best_value:
            self.best_value, self.best_x = float(values[index]), np.array(xs[index], dtype=float)


class BatchOptimizer(Optimizer):
    """An optimiser that proposes a whole batch (a population, a neighbourhood) and acts once
    all of it is told; the batch is handed out in slices of at most n."""

    def __init__(self, space: Space, budget: int, seed: int = 0, **params: Any):
        super().__init__(space, budget, seed, **params)
        self.told = 0  # evaluations told so far
        self._batch: np.ndarray | None = None
        self._given, self._xs, self._vs = 0, [], []

    def ask(self, n: int) -> np.ndarray:
        if self._batch is None:
            self._batch, self._given, self._xs, self._vs = self._propose(), 0, [], []
        out = self._batch[self._given : self._given + max(n, 0)]
        self._given += len(out)
        return out.copy()

    def tell(self, xs: np.ndarray, values: np.ndarray) -> None:
        self._record(xs, values)
        self.told += len(values)
        self._xs.extend(np.asarray(xs, dtype=float))
        self._vs.extend(np.asarray(values, dtype=float))
        if self._batch is not None and len(self._vs) >= len(self._batch):
            self._batch = None
            self._update(np.array(self._xs), np.array(self._vs))

    def _propose(self) -> np.ndarray:
        raise NotImplementedError

    def _update(self, xs: np.ndarray, values: np.ndarray) -> None:
        raise NotImplementedError


@dataclass
class Result:
    best_value: float
    best_point: dict[str, Any]
    evaluations: int
    curve: list[float] = field(default_factory=list)  # best value after each evaluation


def minimize(
    optimizer: Optimizer,
    objective: Callable[[dict[str, Any]], float],
    budget: int,
    should_stop: Callable[[], bool] = lambda: False,
    evaluate_batch: Callable[[list[dict[str, Any]]], list[float]] | None = None,
) -> Result:
    """Evaluate exactly `budget` points (fewer only when stopped) and follow the best."""
    curve: list[float] = []
    best, best_point = math.inf, None
    while len(curve) < budget:
        xs = np.atleast_2d(optimizer.ask(budget - len(curve)))[: budget - len(curve)]
        points = [optimizer.space.decode(x) for x in xs]
        values: list[float] = []
        if evaluate_batch is not None:
            if should_stop():
                break
            values = [float(v) for v in evaluate_batch(points)]
        else:
            for point in points:
                if should_stop():
                    break
                values.append(float(objective(point)))
        for point, value in zip(points, values):
            if value < best:
                best, best_point = value, point
            curve.append(best)
        if len(values) < len(points):
            break
        optimizer.tell(xs, np.asarray(values))
    return Result(best_value=best, best_point=best_point or {}, evaluations=len(curve), curve=curve)
