"""Submit-to-succeeded latency of an iris KNN job, and throughput of 200 jobs at once.

Measured against the same training run as a fresh `python` script, in the same run,
on PostgreSQL + Redis and on the embedded defaults (SQLite + serverless broker).

    .venv/bin/python bench/job_latency.py [--jobs 50] [--burst 200] [--fresh-runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.service_process import start_service
from tests.support.processes import Client

SPEC = {
    "dataset": "iris",
    "algorithm": "knn",
    "params": {"n_neighbors": 5},
    "evaluation": {"test_size": 0.2, "seed": 0},
}

FRESH_SCRIPT = """
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.metrics import accuracy_score
X, y = load_iris(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
model = KNeighborsClassifier(n_neighbors=5).fit(X_train, y_train)
print(accuracy_score(y_test, model.predict(X_test)))
"""


def fresh_script_seconds(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", FRESH_SCRIPT], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def sequential_latencies(client: Client, jobs: int) -> list[float]:
    for _ in range(3):  # warm-up: first jobs pay for connections and caches
        client.wait_for(client.post("/api/v1/jobs", json=SPEC).json()["id"], poll=0.002)
    latencies = []
    for _ in range(jobs):
        start = time.perf_counter()
        job_id = client.post("/api/v1/jobs", json=SPEC).json()["id"]
        job = client.wait_for(job_id, poll=0.002)
        latencies.append(time.perf_counter() - start)
        assert job["status"] == "succeeded", job
    return latencies


def burst_throughput(client: Client, jobs: int) -> tuple[float, int]:
    start = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(lambda _: client.post("/api/v1/jobs", json=SPEC).json()["id"], range(jobs)))
    submitted = time.perf_counter() - start
    pending = set(ids)
    while pending:
        done = {
            job_id
            for job_id in pending
            if client.get(f"/api/v1/jobs/{job_id}").json()["status"] in ("succeeded", "failed")
        }
        pending -= done
        if pending:
            time.sleep(0.05)
    elapsed = time.perf_counter() - start
    failed = sum(client.get(f"/api/v1/jobs/{j}").json()["status"] != "succeeded" for j in ids)
    print(f"    {jobs} submitted in {submitted:.2f}s", flush=True)
    return jobs / elapsed, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--fresh-runs", type=int, default=10)
    args = parser.parse_args()

    print(f"fresh script: {args.fresh_runs} runs", flush=True)
    fresh = fresh_script_seconds(args.fresh_runs)
    fresh_p50 = statistics.median(fresh)
    print(f"    p50 {fresh_p50 * 1000:.0f} ms, p95 {percentile(fresh, 0.95) * 1000:.0f} ms")

    rows = []
    for mode in ("postgres+redis", "embedded"):
        with tempfile.TemporaryDirectory() as home:
            client, processes, cleanup = start_service(
                mode, Path(home), LABTRAIN_MAX_QUEUED="1000"
            )  # the burst is one user
            try:
                print(f"{mode}: {args.jobs} jobs one after another", flush=True)
                latencies = sequential_latencies(client, args.jobs)
                p50, p95 = statistics.median(latencies), percentile(latencies, 0.95)
                print(f"    p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms", flush=True)
                print(f"{mode}: {args.burst} jobs at once", flush=True)
                rate, failed = burst_throughput(client, args.burst)
                print(f"    {rate:.1f} jobs/s, {failed} failed", flush=True)
                rows.append((mode, p50, p95, rate, failed))
            finally:
                for process in processes:
                    process.stop()
                if cleanup:
                    cleanup()

    print("\n| mode | p50 latency | p95 latency | fresh script p50 | fresh / service p50 | burst jobs/s | failed |")
    print("|---|---|---|---|---|---|---|")
    for mode, p50, p95, rate, failed in rows:
        print(
            f"| {mode} | {p50 * 1000:.1f} ms | {p95 * 1000:.1f} ms | {fresh_p50 * 1000:.0f} ms | "
            f"{fresh_p50 / p50:.1f}x | {rate:.1f} | {failed} |"
        )


if __name__ == "__main__":
    main()
