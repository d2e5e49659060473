"""Benchmark functions for optimisation jobs, with their usual bounds; all have minimum 0."""

from __future__ import annotations

import numpy as np

FUNCTIONS = {
    "sphere": (-5.12, 5.12),
    "rastrigin": (-5.12, 5.12),
    "rosenbrock": (-2.048, 2.048),
    "ackley": (-32.768, 32.768),
    "griewank": (-600.0, 600.0),
}


def evaluate(name: str, x: np.ndarray) -> float:
    x = np.asarray(x, dtype=float)
    n = x.size
    if name == "sphere":
        return float(np.sum(x * x))
    if name == "rastrigin":
        return float(10 * n + np.sum(x * x - 10 * np.cos(2 * np.pi * x)))
    if name == "rosenbrock":
        return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))
    if name == "ackley":
        return float(-20 * np.exp(-0.2 * np.sqrt(np.mean(x * x))) - np.exp(np.mean(np.cos(2 * np.pi * x))) + 20 + np.e)
    if name == "griewank":
        return float(1 + np.sum(x * x) / 4000 - np.prod(np.cos(x / np.sqrt(np.arange(1, n + 1)))))
    raise ValueError(f"unknown function {name!r}")
