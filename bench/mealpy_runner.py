"""The same runs as bench/search.py, with mealpy's implementations of the seven algorithms.

Runs in its own environment (mealpy pins numpy <= 1.26); bench/search.py creates it and
calls this script, which prints one JSON object. The benchmark functions are the project's
own, loaded from their file (it needs only numpy), so both sides optimise the same thing.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
from mealpy import FloatVar
from mealpy.evolutionary_based import GA
from mealpy.math_based import TS
from mealpy.physics_based import SA
from mealpy.swarm_based import ABC, ACOR, BFO, PSO

FUNCTIONS_FILE = Path(__file__).resolve().parents[1] / "service" / "optimizers" / "functions.py"
spec = importlib.util.spec_from_file_location("functions", FUNCTIONS_FILE)
functions = importlib.util.module_from_spec(spec)
spec.loader.exec_module(functions)

# Each with mealpy's defaults; `epoch` is only a cap, the evaluation budget ends the run.
MODELS = {
    "ga": GA.BaseGA,
    "sa": SA.OriginalSA,
    "tabu": TS.OriginalTS,
    "aco": ACOR.OriginalACOR,
    "pso": PSO.OriginalPSO,
    "bfo": BFO.OriginalBFO,
    "abc": ABC.OriginalABC,
}


def run(name: str, objective, dimensions: int, bounds, budget: int, seed: int) -> list[float]:
    """The best value after each evaluation, over the first `budget` evaluations."""
    curve: list[float] = []

    def counted(x):
        value = objective(np.asarray(x))
        if len(curve) < budget:
            curve.append(min(value, curve[-1]) if curve else value)
        return value

    problem = {
        "obj_func": counted,
        "bounds": FloatVar(lb=[bounds[0]] * dimensions, ub=[bounds[1]] * dimensions),
        "minmax": "min",
        "log_to": None,
    }
    MODELS[name](epoch=100_000).solve(problem, termination={"max_fe": budget}, seed=seed)
    return curve


def main() -> None:
    request = json.loads(sys.argv[1])
    dims, seeds, checkpoints = request["dimensions"], request["seeds"], request["checkpoints"]
    out = {"quality": {}, "speed": {}}
    for name in MODELS:
        for function in request["functions"]:
            bounds = functions.FUNCTIONS[function]
            runs = []
            for seed in range(seeds):
                curve = run(name, lambda x, f=function: functions.evaluate(f, x), dims, bounds, checkpoints[-1], seed)
                runs.append([curve[min(c, len(curve)) - 1] for c in checkpoints])
            out["quality"][f"{name}/{function}"] = runs
        start = time.perf_counter()
        evaluations = len(run(name, lambda x: 0.0, dims, (-1.0, 1.0), request["speed_evaluations"], 0))
        out["speed"][name] = evaluations / (time.perf_counter() - start)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
