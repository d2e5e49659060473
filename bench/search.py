"""The metaheuristics on benchmark functions: best value after 1,000 and 5,000 evaluations
(median of 5 seeds) on rastrigin-10 and ackley-10, and the optimiser's own speed
(evaluations per second on a trivial objective), each strategy beside random search and
beside mealpy's implementation of the same algorithm, measured in the same run.

mealpy pins numpy <= 1.26, so it gets its own environment beside the project's
(bench/.mealpy-venv, made on the first run; --no-compare skips it).

    .venv/bin/python bench/search.py [--seeds 5] [--dimensions 10] [--no-compare]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.metaheuristics import OPTIMIZERS, Space, minimize
from service.optimize.functions import FUNCTIONS, evaluate

CHECKPOINTS = (1000, 5000)
FUNCTIONS_COMPARED = ("rastrigin", "ackley")
SPEED_EVALUATIONS = 20_000
BENCH = Path(__file__).resolve().parent
MEALPY_VENV = BENCH / ".mealpy-venv"
MEALPY = "mealpy==3.0.3"


def run(strategy: str, function: str, dimensions: int, seed: int) -> list[float]:
    space = Space.box(dimensions, *FUNCTIONS[function])
    optimizer = OPTIMIZERS[strategy](space, CHECKPOINTS[-1], seed=seed)
    names = [d.name for d in space.dims]
    result = minimize(optimizer, lambda p: evaluate(function, np.array([p[n] for n in names])), CHECKPOINTS[-1])
    return [result.curve[c - 1] for c in CHECKPOINTS]


def speed(strategy: str, dimensions: int, evaluations: int = SPEED_EVALUATIONS) -> float:
    space = Space.box(dimensions, -1.0, 1.0)
    optimizer = OPTIMIZERS[strategy](space, evaluations, seed=0)
    start = time.perf_counter()
    minimize(optimizer, lambda p: 0.0, evaluations)
    return evaluations / (time.perf_counter() - start)


def mealpy_results(seeds: int, dimensions: int) -> dict:
    """The same runs with mealpy, in its own environment (made here on first use)."""
    python = MEALPY_VENV / "bin" / "python"
    if not python.exists():
        print(f"making {MEALPY_VENV} with {MEALPY} ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(MEALPY_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", MEALPY], check=True)
    request = {
        "dimensions": dimensions,
        "seeds": seeds,
        "checkpoints": list(CHECKPOINTS),
        "functions": list(FUNCTIONS_COMPARED),
        "speed_evaluations": SPEED_EVALUATIONS,
    }
    done = subprocess.run(
        [str(python), str(BENCH / "mealpy_runner.py"), json.dumps(request)], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--dimensions", type=int, default=10)
    parser.add_argument("--no-compare", action="store_true", help="skip the comparison with mealpy")
    args = parser.parse_args()
    names = sorted(OPTIMIZERS, key=lambda n: (n != "random", n))
    ours: dict[str, list[float]] = {}
    print(
        f"| strategy | rastrigin-{args.dimensions} @1k | @5k | ackley-{args.dimensions} @1k | @5k | "
        "optimiser evaluations/s (trivial objective) |"
    )
    print("|---|---|---|---|---|---|")
    for name in names:
        cells = []
        for function in FUNCTIONS_COMPARED:
            runs = [run(name, function, args.dimensions, seed) for seed in range(args.seeds)]
            cells += [statistics.median(r[i] for r in runs) for i in range(len(CHECKPOINTS))]
        ours[name] = [*cells, speed(name, args.dimensions)]
        print(f"| {name} | {' | '.join(f'{c:.4g}' for c in cells)} | {ours[name][-1]:,.0f} |", flush=True)
    if args.no_compare:
        return
    theirs = mealpy_results(args.seeds, args.dimensions)
    print(
        f"\nmealpy ({MEALPY}, its default parameters), same functions, budgets and seeds; "
        "ratio = ours / mealpy (below 1: ours found lower values; speed above 1: ours is faster)"
    )
    print(
        f"| strategy | rastrigin-{args.dimensions} @1k | @5k | ackley-{args.dimensions} @1k | @5k | "
        "evaluations/s | speed ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in (n for n in names if n in theirs["speed"]):
        cells = []
        for k, function in enumerate(FUNCTIONS_COMPARED):
            runs = theirs["quality"][f"{name}/{function}"]
            for i in range(len(CHECKPOINTS)):
                value = statistics.median(r[i] for r in runs)
                mine = ours[name][k * len(CHECKPOINTS) + i]
                cells.append(f"{value:.4g} ({mine / value:.2g}x)" if value else f"{value:.4g}")
        rate = theirs["speed"][name]
        print(f"| {name} | {' | '.join(cells)} | {rate:,.0f} | {ours[name][-1] / rate:.1f} |", flush=True)


if __name__ == "__main__":
    main()
