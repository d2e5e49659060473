"""Open event streams against polling clients, on PostgreSQL + Redis under `labtrain api`'s
default settings (2 processes).

For each N (0 first: the baseline), N jobs are made running and a stream is opened on each;
a writer adds an event to every job every --period seconds, stamped with the wall clock,
and each stream notes how long each event took to reach it. Meanwhile 10 clients poll
`GET /api/v1/jobs/<id>`, each every 0.25 s after its previous answer. Reported per N: the events' delay
(p50, p99, max), events missed, poll errors (a 10 s timeout counts), poll p50/p99 and its
ratio to the baseline's, and the API processes' memory per open stream.

    .venv/bin/python bench/streams.py [--streams 30 100 300] [--seconds 20] [--period 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import psutil
from sqlalchemy import create_engine, text, update

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.service_process import PG_ADMIN, REDIS
from service.core.db import Database
from service.core.orm import Job
from service.jobs import lifecycle
from tests.conftest import free_port
from tests.support.processes import ServiceProcess, run_cli, service_env, wait_until_healthy

POLLERS = 10
POLL_EVERY_S = 0.25  # each poller, like a CLI's `watch` or a page refreshing a job
POLL_TIMEOUT_S = 10.0
SPEC = {"dataset": "iris", "algorithm": "knn"}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def api_memory(process: ServiceProcess) -> int:
    root = psutil.Process(process.proc.pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])


class Writer(threading.Thread):
    """Adds an epoch event to every job each period, stamped with the wall clock."""

    def __init__(self, url: str, jobs: list[str], period: float):
        super().__init__(daemon=True)
        self.db, self.jobs, self.period = Database(url), jobs, period
        self.stop = threading.Event()
        self.written = 0

    def run(self) -> None:
        epoch = 0
        while not self.stop.is_set():
            epoch += 1
            started = time.monotonic()
            for job_id in self.jobs:
                with self.db.session() as session:
                    lifecycle.add_event(session, job_id, "epoch", {"epoch": epoch, "sent": time.time()})
                self.written += 1
                # Spread the writes over the period, as jobs' epochs end at different times.
                self.stop.wait(self.period / max(1, len(self.jobs)) * 0.8)
            self.stop.wait(max(0.0, self.period - (time.monotonic() - started)))


async def follow(
    client: httpx.AsyncClient, job_id: str, since: float, delays: list[float], ready: asyncio.Event, count: list[int]
):
    headers = {"Accept": "text/event-stream"}
    async with client.stream("GET", f"/api/v1/jobs/{job_id}/events", headers=headers) as r:
        count[0] += 1
        if count[0] >= count[1]:
            ready.set()
        data = None
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                data = json.loads(line[6:])
            elif not line and data is not None:
                # A stream first sends the job's history: earlier rounds' events are not this round's.
                if data["type"] == "epoch" and data["data"]["sent"] >= since:
                    delays.append(time.time() - data["data"]["sent"])
                data = None


async def poll(client: httpx.AsyncClient, jobs: list[str], until: float, latencies: list[float], errors: list[str]):
    i = 0
    while time.monotonic() < until:
        i += 1
        await asyncio.sleep(POLL_EVERY_S)
        started = time.perf_counter()
        try:
            response = await client.get(f"/api/v1/jobs/{jobs[i % len(jobs)]}", timeout=POLL_TIMEOUT_S)
            if response.status_code != 200:
                errors.append(str(response.status_code))
            latencies.append(time.perf_counter() - started)
        except httpx.HTTPError as exc:
            errors.append(type(exc).__name__)


async def measure(base: str, token: str, jobs: list[str], n: int, seconds: float, db_url: str, period: float, api):
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=n + POLLERS + 10, max_keepalive_connections=n + POLLERS + 10)
    async with (
        httpx.AsyncClient(base_url=base, headers=headers, timeout=None, limits=limits) as streams,
        httpx.AsyncClient(base_url=base, headers=headers, limits=httpx.Limits(max_connections=POLLERS)) as pollers,
    ):
        before = api_memory(api)
        delays: list[float] = []
        ready, count = asyncio.Event(), [0, n]
        since = time.time()
        followers = [asyncio.create_task(follow(streams, job_id, since, delays, ready, count)) for job_id in jobs[:n]]
        if n:
            await asyncio.wait_for(ready.wait(), 120)
        await asyncio.sleep(1.0)
        opened = api_memory(api)
        writer = Writer(db_url, jobs[:n], period)
        writer.start()
        latencies: list[float] = []
        errors: list[str] = []
        until = time.monotonic() + seconds
        await asyncio.gather(*(poll(pollers, jobs, until, latencies, errors) for _ in range(POLLERS)))
        writer.stop.set()
        writer.join()
        await asyncio.sleep(2.0)  # the last events arrive
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
    return {
        "streams": n,
        "events_written": writer.written,
        "events_received": len(delays),
        "delay_p50_ms": percentile(delays, 0.5) * 1000,
        "delay_p99_ms": percentile(delays, 0.99) * 1000,
        "delay_max_ms": max(delays) * 1000 if delays else float("nan"),
        "polls": len(latencies),
        "poll_errors": len(errors),
        "poll_p50_ms": percentile(latencies, 0.5) * 1000,
        "poll_p99_ms": percentile(latencies, 0.99) * 1000,
        "memory_per_stream_kb": (opened - before) / n / 1024 if n else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[30, 100, 300])
    parser.add_argument("--seconds", type=float, default=20.0, help="polling time per N")
    parser.add_argument("--period", type=float, default=2.0, help="seconds between a job's events")
    options = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="labtrain-bench-streams-"))
    database = f"labtrain_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{database}"
    env = service_env(home, LABTRAIN_DATABASE_URL=url, LABTRAIN_BROKER_URL=REDIS, LABTRAIN_MAX_QUEUED="100000")
    run_cli(["db", "upgrade"], env)
    token = run_cli(["users", "create", "bench"], env).stdout.strip()
    port = free_port()
    api = ServiceProcess(["api", "--port", str(port)], env, home / "api.log")  # the defaults: 2 processes
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, [api])
        most = max(options.streams)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:
            jobs = [client.post("/api/v1/jobs", json=SPEC).json()["id"] for _ in range(max(most, POLLERS))]
        db = Database(url)
        with db.session() as session:  # running, as if a worker had them: their streams stay open
            session.execute(update(Job).where(Job.id.in_(jobs)).values(status=lifecycle.RUNNING))
        db.dispose()
        rows = []
        for n in [0, *options.streams]:
            rows.append(asyncio.run(measure(base, token, jobs, n, options.seconds, url, options.period, api)))
            print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in rows[-1].items()}), flush=True)
        baseline = rows[0]["poll_p99_ms"]
        print(
            "\n| streams | events received / written | delay p50 / p99 / max (ms) | poll errors | poll p50 / p99 (ms) "
            "| poll p99 vs none | memory per stream |"
        )
        print("|---|---|---|---|---|---|---|")
        for row in rows:
            print(
                f"| {row['streams']} | {row['events_received']} / {row['events_written']} | "
                f"{row['delay_p50_ms']:.0f} / {row['delay_p99_ms']:.0f} / {row['delay_max_ms']:.0f} | "
                f"{row['poll_errors']} of {row['polls']} | {row['poll_p50_ms']:.1f} / {row['poll_p99_ms']:.1f} | "
                f"{row['poll_p99_ms'] / baseline:.2f}x | {row['memory_per_stream_kb']:.0f} KB |"
            )
        print(f"\n{statistics.fmean(r['poll_p99_ms'] for r in rows[1:]):.1f} ms mean poll p99 with streams open")
    finally:
        api.stop()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
