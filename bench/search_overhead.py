"""A 100-trial random search over KNN's n_neighbors on wine (5-fold CV, scaled, `parallel` 4)
through the service, against the same 100 trials in a plain Optuna loop in one process, in
one run. Goal: the service at most 2x the plain loop, on each backend.

The service runs on PostgreSQL + Redis with one worker of 2 slots (the machine's cores), and
on the embedded defaults (`labtrain up` with no settings: SQLite and the serverless broker);
the plain loop evaluates the same pipeline with the same folds, one trial after another, and
is measured again just before each backend's search, so each ratio is against its neighbour.
Each deployment first runs an untimed 4-trial search, so the worker has booted and every
process has done the search path once (until 2026-12-05 the worker's boot was timed too).

    .venv/bin/python bench/search_overhead.py [--trials 100] [--modes postgres+redis embedded]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import optuna
from sklearn.datasets import load_wine
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.service_process import start_service

MODES = {"postgres+redis": "PostgreSQL + Redis", "embedded": "embedded (SQLite + serverless broker)"}


def plain_loop(trials: int) -> tuple[float, float]:
    """Seconds for the trials, and the best mean accuracy."""
    x, y = load_wine(return_X_y=True)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)

    def objective(trial: optuna.Trial) -> float:
        model = make_pipeline(StandardScaler(), KNeighborsClassifier(trial.suggest_int("n_neighbors", 1, 30)))
        return cross_val_score(model, x, y, cv=folds, scoring="accuracy").mean()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    started = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    return time.perf_counter() - started, study.best_value


def search_spec(trials: int) -> dict:
    """The search the benchmark submits (bench/profile_job_path.py profiles the same one)."""
    return {
        "dataset": "wine",
        "algorithm": "knn",
        "evaluation": {"cv": 5},
        "preprocessing": {"scale": True},
        "search": {
            "strategy": "random",
            "trials": trials,
            "parallel": 4,
            "space": {"n_neighbors": {"type": "int", "low": 1, "high": 30}},
        },
    }


def service_search(mode: str, trials: int) -> tuple[float, float, int]:
    """Seconds from submit to the search's end, its best value, and its failed trials."""
    with tempfile.TemporaryDirectory() as home:
        client, processes, cleanup = start_service(mode, Path(home), LABTRAIN_MAX_QUEUED="1000")
        try:
            # A 4-trial search first, untimed: the API answers before the worker has booted (its
            # parent imports the frameworks before forking, seconds on a busy machine), and a
            # lab's service has long been running when a student's search comes.
            warming = time.perf_counter()
            warm_id = client.post("/api/v1/jobs", json=search_spec(4)).json()["id"]
            assert client.follow(warm_id, timeout=600)["status"] == "succeeded"
            print(f"{mode}: warm-up search (worker boot included) {time.perf_counter() - warming:.1f} s", flush=True)
            started = time.perf_counter()
            job_id = client.post("/api/v1/jobs", json=search_spec(trials)).json()["id"]
            job = client.follow(job_id, timeout=1800)
            elapsed = time.perf_counter() - started
            assert job["status"] == "succeeded", job
            failed = sum(1 for t in job["result"]["trials"] if t.get("status") != "succeeded")
            return elapsed, job["result"]["best_value"], failed
        finally:
            for process in processes:
                process.stop()
            if cleanup:
                cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    options = parser.parse_args()
    rows = []
    for mode in options.modes:
        plain, plain_best = plain_loop(options.trials)
        print(f"plain Optuna loop: {plain:.1f} s, best {plain_best:.4f}", flush=True)
        service, service_best, failed = service_search(mode, options.trials)
        print(f"{mode} search: {service:.1f} s, best {service_best:.4f}, {failed} failed trials", flush=True)
        rows.append((mode, plain, service))
    print("\n| backend | trials | plain loop | service | service / plain | per trial (service) |")
    print("|---|---|---|---|---|---|")
    for mode, plain, service in rows:
        print(
            f"| {MODES[mode]} | {options.trials} | {plain:.1f} s | {service:.1f} s | {service / plain:.2f}x | "
            f"{service / options.trials * 1000:.0f} ms |"
        )


if __name__ == "__main__":
    main()
