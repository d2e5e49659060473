"""The metaheuristics on benchmark functions: best value after 1,000 and 5,000 evaluations
(median of 5 seeds) on rastrigin-10 and ackley-10, and the optimiser's own speed
(evaluations per second on a trivial objective), each strategy beside random search.

    .venv/bin/python bench/search.py [--seeds 5] [--dimensions 10]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.optimizers import Space, minimize, strategies  # noqa: E402
from service.optimizers.functions import FUNCTIONS, evaluate  # noqa: E402

CHECKPOINTS = (1000, 5000)


def run(strategy: str, function: str, dimensions: int, seed: int) -> list[float]:
    space = Space.box(dimensions, *FUNCTIONS[function])
    optimizer = strategies()[strategy](space, CHECKPOINTS[-1], seed=seed)
    names = [d.name for d in space.dims]
    result = minimize(optimizer, lambda p: evaluate(function, np.array([p[n] for n in names])), CHECKPOINTS[-1])
    return [result.curve[c - 1] for c in CHECKPOINTS]


def speed(strategy: str, dimensions: int, evaluations: int = 20_000) -> float:
    space = Space.box(dimensions, -1.0, 1.0)
    optimizer = strategies()[strategy](space, evaluations, seed=0)
    start = time.perf_counter()
    minimize(optimizer, lambda p: 0.0, evaluations)
    return evaluations / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--dimensions", type=int, default=10)
    args = parser.parse_args()
    names = sorted(strategies(), key=lambda n: (n != "random", n))
    print(f"| strategy | rastrigin-{args.dimensions} @1k | @5k | ackley-{args.dimensions} @1k | @5k | "
          "optimiser evaluations/s (trivial objective) |")
    print("|---|---|---|---|---|---|")
    for name in names:
        cells = []
        for function in ("rastrigin", "ackley"):
            runs = [run(name, function, args.dimensions, seed) for seed in range(args.seeds)]
            cells += [f"{statistics.median(r[i] for r in runs):.4g}" for i in range(len(CHECKPOINTS))]
        print(f"| {name} | {' | '.join(cells)} | {speed(name, args.dimensions):,.0f} |", flush=True)


if __name__ == "__main__":
    main()
