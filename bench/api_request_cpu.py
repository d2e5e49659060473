"""The API's CPU a request (GET a finished job, GET /healthz, POST a job), parsing HTTP in C
(httptools, as served) against h11 (pure Python, before 2026-12-06, late night), in the same run:
the embedded deployment (`labtrain up`) is started with each in turn, `--rounds` times, and each
request sent `--requests` times one after another; the API processes' CPU time (psutil) is divided
by the requests. The client's own CPU a request is printed beside it: it tells how fast the
machine ran then.

    .venv/bin/python bench/api_request_cpu.py [--rounds 3] [--requests 400]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.job_latency import SPEC
from bench.service_process import start_service

H11_HOOK = Path(__file__).resolve().parent / "h11_hook"
PARSERS = ("httptools", "h11")


def per_request(parser: str, requests: int) -> dict[str, tuple[float, float]]:
    """{request: (API CPU ms, client CPU ms)} a request."""
    extra = {}
    if parser == "h11":
        extra["PYTHONPATH"] = os.pathsep.join(p for p in (str(H11_HOOK), os.environ.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryDirectory() as home:
        client, processes, _ = start_service("embedded", Path(home), **extra)
        try:
            job = client.post("/api/v1/jobs", json=SPEC).json()["id"]
            client.follow(job)
            children = psutil.Process(processes[0].proc.pid).children(recursive=True)
            api = [p for p in children if "api" in p.cmdline()]
            calls = {
                "GET a job": lambda: client.get(f"/api/v1/jobs/{job}"),
                "GET /healthz": lambda: client.get("/healthz"),
                "POST a job": lambda: client.post("/api/v1/jobs", json=SPEC),
            }
            found = {}
            for name, call in calls.items():
                for _ in range(20):
                    call()
                api_before, client_before = sum(sum(p.cpu_times()[:2]) for p in api), time.process_time()
                for _ in range(requests):
                    call()
                api_ms = (sum(sum(p.cpu_times()[:2]) for p in api) - api_before) * 1000 / requests
                found[name] = (api_ms, (time.process_time() - client_before) * 1000 / requests)
            return found
        finally:
            for process in processes:
                process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, tuple[float, float]]]] = {p: [] for p in PARSERS}
    for round_ in range(args.rounds):
        for name in PARSERS:  # alternating, so both see the machine of the same minutes
            runs[name].append(per_request(name, args.requests))
            print(f"round {round_ + 1}, {name}: " + ", ".join(f"{k} {v[0]:.2f} ms" for k, v in runs[name][-1].items()))
    print("\n| request | API CPU, httptools | API CPU, h11 | h11 / httptools | client CPU (both) |")
    print("|---|---|---|---|---|")
    for request in runs["h11"][0]:
        fast, slow = ([run[request][0] for run in runs[p]] for p in PARSERS)
        client = statistics.median(run[request][1] for p in PARSERS for run in runs[p])
        print(
            f"| {request} | {statistics.median(fast):.2f} ms | {statistics.median(slow):.2f} ms | "
            f"{statistics.median(slow) / statistics.median(fast):.2f} | {client:.2f} ms |"
        )


if __name__ == "__main__":
    main()
