"""Thirty students at once: each submits jobs and polls their status through the HTTP API
for two minutes, against PostgreSQL + Redis with gunicorn (not a pass/fail test).

    .venv/bin/python bench/load_test.py [--students 30] [--seconds 120] [--api-workers 3]

Reports requests per second, status-poll latency (p50, p99), jobs completed, errors
(5xx answers and failed connections; 429s from the queued-jobs limit are counted apart)
and lost jobs (submitted but not succeeded once the load stops and the queue drains).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.service_process import start_service
from tests.support.processes import Client, run_cli

JOBS = [
    {"dataset": "iris", "algorithm": "knn"},
    {"dataset": "wine", "algorithm": "svm"},
    {"dataset": "breast_cancer", "algorithm": "decision_tree", "evaluation": {"cv": 3}},
]


class Student(threading.Thread):
    def __init__(self, client: Client, until: float, seed: int):
        super().__init__(daemon=True)
        self.client, self.until, self.random = client, until, random.Random(seed)
        self.submitted: list[str] = []
        self.poll_ms: list[float] = []
        self.requests = self.errors = self.limited = 0

    def call(self, method: str, path: str, **kwargs) -> requests.Response | None:
        self.requests += 1
        try:
            response = getattr(self.client, method)(path, **kwargs)
        except requests.RequestException:
            self.errors += 1
            return None
        if response.status_code >= 500:
            self.errors += 1
        return response

    def run(self) -> None:
        next_submit = time.monotonic() + self.random.uniform(0, 3)
        while time.monotonic() < self.until:
            if time.monotonic() >= next_submit:
                response = self.call("post", "/api/v1/jobs", json=self.random.choice(JOBS))
                if response is not None and response.status_code == 201:
                    self.submitted.append(response.json()["id"])
                elif response is not None and response.status_code == 429:
                    self.limited += 1
                next_submit = time.monotonic() + self.random.uniform(2, 6)
            if self.submitted:  # poll the newest job, as a student watching it would
                start = time.perf_counter()
                response = self.call("get", f"/api/v1/jobs/{self.submitted[-1]}")
                if response is not None and response.status_code == 200:
                    self.poll_ms.append((time.perf_counter() - start) * 1000)
            if self.random.random() < 0.05:
                self.call("get", "/api/v1/jobs?limit=20")
            time.sleep(self.random.uniform(0.3, 0.7))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--api-workers", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as home:
        bench, processes, cleanup = start_service("postgres+redis", Path(home), api_workers=args.api_workers)
        env = processes[0].env
        try:
            admin = Client(bench.base_url, run_cli(["users", "create", "proctor", "--admin"], env).stdout.strip())
            clients = [
                Client(admin.base_url, run_cli(["users", "create", f"student{i:02d}"], env).stdout.strip())
                for i in range(args.students)
            ]
            until = time.monotonic() + args.seconds
            students = [Student(client, until, seed) for seed, client in enumerate(clients)]
            started = time.perf_counter()
            for student in students:
                student.start()
            for student in students:
                student.join()
            elapsed = time.perf_counter() - started
            submitted = [job_id for s in students for job_id in s.submitted]
            drain_until = time.monotonic() + 180
            pending = set(submitted)
            while pending and time.monotonic() < drain_until:
                pending = {
                    j for j in pending if admin.get(f"/api/v1/jobs/{j}").json()["status"] not in ("succeeded", "failed")
                }
                time.sleep(1)
            statuses = [admin.get(f"/api/v1/jobs/{j}").json()["status"] for j in submitted]
        finally:
            for process in processes:
                process.stop()
            if cleanup:
                cleanup()

    polls = sorted(ms for s in students for ms in s.poll_ms)
    requests_made = sum(s.requests for s in students)
    print(f"{args.students} students for {args.seconds:.0f} s, API: gunicorn with {args.api_workers} processes")
    print(
        f"requests: {requests_made} ({requests_made / elapsed:.1f}/s), errors: {sum(s.errors for s in students)}, "
        f"429 (queued limit): {sum(s.limited for s in students)}"
    )
    print(
        f"status polls: {len(polls)}, p50 {statistics.median(polls):.1f} ms, "
        f"p99 {polls[int(0.99 * (len(polls) - 1))]:.1f} ms, max {polls[-1]:.1f} ms"
    )
    print(
        f"jobs: {len(submitted)} submitted, {statuses.count('succeeded')} succeeded, "
        f"{statuses.count('failed')} failed, lost (not finished): {len(submitted) - statuses.count('succeeded') - statuses.count('failed')}"
    )


if __name__ == "__main__":
    main()
