"""Submit-to-succeeded latency of an iris KNN job, and throughput of 200 jobs at once.

Measured against, in the same run: the job's own cost in process (the same submit and the
worker's runner called directly, on a database of the same kind that no process of the service
reads: claim, load, fit, score, save, finish, with no HTTP, broker or dispatcher between), timed
in blocks of 10 jobs alternating with the service's own, so that a shared machine's changes of
pace in those minutes weigh on both alike; and the same training as a fresh `python` script; on
PostgreSQL + Redis and on the embedded defaults (SQLite + serverless broker). The service's own
overhead is the HTTP p50 against the in-process p50; the goals: p50 at most 1.5x the in-process
cost plus 10 ms, and 200 jobs at once at least 0.6x the in-process serial rate times the
worker's slots (2), that rate from BESIDE_BURST in-process jobs just before the burst and as
many just after it (until 2026-12-07, the sequential jobs' p50).

Where a job's latency goes, hop by hop: the client's clock before the POST, at the end of the
job's event stream and after its GET, and the job's own times (created, released by the
dispatcher, started by the worker's claim, finished), all on this machine's clock. Each hop's
p50 is printed; they need not add up to the p50 of the whole.

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
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.service_process import scratch_database, start_service
from tests.support.processes import Client

SPEC = {
    "dataset": "iris",
    "algorithm": "knn",
    "params": {"n_neighbors": 5},
    "evaluation": {"test_size": 0.2, "seed": 0},
}

UNFINISHED = ("queued", "running")  # in this order: a job that starts between the two looks is seen running

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


class InProcessJobs:
    """The same job submitted and run in this process, as the API and a worker would, with nothing
    between (claim, load, fit, score, save, finish; no HTTP, broker or dispatcher), on a database
    of the same kind that no process of the service reads, so that it can be timed while the
    service is up, beside the service's own jobs."""

    def __init__(self, mode: str, home: Path):
        from service.core.config import Settings
        from service.core.db import Database
        from service.core.orm import User
        from workers.runner import JobRunner

        url, self._drop = scratch_database(mode, home)
        settings = Settings.from_env_map(
            {"LABTRAIN_HOME": str(home), "LABTRAIN_DATABASE_URL": url, "LABTRAIN_MAX_QUEUED": "100000"}
        )
        settings.ensure_dirs()
        self.settings, self.db = settings, Database(url)
        self.runner = JobRunner(settings, self.db, "bench@in-process")
        with self.db.session() as session:
            self.user_id = session.query(User).one().id

    def seconds(self) -> float:
        from service.core.orm import User
        from service.jobs import submission
        from service.jobs.context import SubmitContext

        start = time.perf_counter()
        with self.db.session() as session:
            user = session.get(User, self.user_id)
            job_id = submission.submit(SubmitContext(session, self.settings, user), SPEC).id
        assert self.runner.run(job_id) == "succeeded"
        return time.perf_counter() - start

    def close(self) -> None:
        self.db.dispose()
        if self._drop:
            self._drop()


# In-process jobs timed just before and just after the burst, its rate's baseline: a shared
# machine's pace moves within a minute, and the sequential jobs' p50 was timed minutes earlier.
BESIDE_BURST = 20

HOPS = (
    "request to the job's row (HTTP, auth, checks)",
    "row to release (commit, the dispatcher's wake-up, look, round)",
    "release to start (broker, worker, claim)",
    "the run (data, fit, score, model, outcome)",
    "end to the stream's client (commit, wake-up, read, send)",
    "the job's GET after its stream",
)


def alternating_latencies(
    client: Client, own: InProcessJobs, jobs: int, block: int = 10
) -> tuple[list[float], dict[str, tuple[float, float, float]], list[float]]:
    """Each service job's latency, (client clock before the POST, after its stream ended, after its
    GET) by id, and each in-process job's seconds: `block` of one, then `block` of the other, so
    that both are measured through the same minutes of a shared machine."""
    # Each job is followed on its event stream, as `labtrain run` follows it: polling fast enough
    # to time it would take the CPU the job runs on.
    for _ in range(3):  # warm-up: first jobs pay for connections and caches
        client.follow(client.post("/api/v1/jobs", json=SPEC).json()["id"])
        own.seconds()
    latencies, clocks, own_seconds = [], {}, []
    while len(latencies) < jobs:
        count = min(block, jobs - len(latencies))
        for _ in range(count):
            start, wall = time.perf_counter(), time.time()
            job_id = client.post("/api/v1/jobs", json=SPEC).json()["id"]
            client.wait_for_end(job_id)
            ended = time.perf_counter()
            job = client.get(f"/api/v1/jobs/{job_id}").json()
            latencies.append(time.perf_counter() - start)
            clocks[job_id] = (wall, wall + ended - start, wall + latencies[-1])
            assert job["status"] == "succeeded", job
        own_seconds += [own.seconds() for _ in range(count)]
    return latencies, clocks, own_seconds


def hop_medians(database: str, clocks: dict[str, tuple[float, float, float]]) -> list[float]:
    """The p50 of each of HOPS, in seconds, from the client's clocks and the jobs' own times."""
    from sqlalchemy import create_engine, select

    from service.core.orm import Job

    engine = create_engine(database)
    with engine.connect() as connection:
        rows = connection.execute(
            select(Job.id, Job.created_at, Job.released_at, Job.started_at, Job.finished_at).where(
                Job.id.in_(list(clocks))
            )
        ).all()
    engine.dispose()
    hops: list[list[float]] = [[] for _ in HOPS]
    for job_id, *times in rows:
        sent, ended, got = clocks[job_id]
        stamps = [sent, *(_epoch(t) for t in times), ended, got]
        for hop, (before, after) in enumerate(zip(stamps, stamps[1:])):
            hops[hop].append(after - before)
    return [statistics.median(values) for values in hops]


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()  # the service stores UTC


def burst_throughput(client: Client, jobs: int) -> tuple[float, int]:
    start = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(lambda _: client.post("/api/v1/jobs", json=SPEC).json()["id"], range(jobs)))
    submitted = time.perf_counter() - start
    # The jobs end about in the order they were sent: follow the last one on its event stream (no
    # polling, which would take CPU from the jobs: two lists every 50 ms cost the API about 4 ms
    # a job), then any left unfinished, until none of the user's is queued or running.
    following = ids[-1]
    while following:
        client.follow(following)
        left = [job for status in UNFINISHED for job in client.get(f"/api/v1/jobs?status={status}").json()["items"]]
        following = left[0]["id"] if left else None
    elapsed = time.perf_counter() - start
    statuses = {job["id"]: job["status"] for job in client.get("/api/v1/jobs?limit=500").json()["items"]}
    assert set(ids) <= set(statuses), "a job of the burst is missing from the list"
    failed = sum(statuses[job_id] != "succeeded" for job_id in ids)
    print(f"    {jobs} submitted in {submitted:.2f}s", flush=True)
    return jobs / elapsed, failed


def database_of(processes) -> str:
    return (
        processes[0].env.get("LABTRAIN_DATABASE_URL")
        or f"sqlite:///{Path(processes[0].env['LABTRAIN_HOME'])}/labtrain.db"
    )


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

    rows, hops = [], {}
    for mode in ("postgres+redis", "embedded"):
        with tempfile.TemporaryDirectory() as home:
            client, processes, cleanup = start_service(
                mode, Path(home), LABTRAIN_MAX_QUEUED="1000"
            )  # the burst is one user
            own = None
            try:
                own = InProcessJobs(mode, Path(home) / "in-process")
                print(f"{mode}: {args.jobs} jobs one after another, and as many in process", flush=True)
                latencies, clocks, own_seconds = alternating_latencies(client, own, args.jobs)
                p50, p95 = statistics.median(latencies), percentile(latencies, 0.95)
                own_p50 = statistics.median(own_seconds)
                print(f"    p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms", flush=True)
                print(f"    in process: p50 {own_p50 * 1000:.1f} ms", flush=True)
                hops[mode] = hop_medians(database_of(processes), clocks)
                print(f"{mode}: {args.burst} jobs at once, {BESIDE_BURST} in process before and after", flush=True)
                beside = [own.seconds() for _ in range(BESIDE_BURST)]
                rate, failed = burst_throughput(client, args.burst)
                beside += [own.seconds() for _ in range(BESIDE_BURST)]
                own_beside = statistics.median(beside)
                print(f"    {rate:.1f} jobs/s, {failed} failed; in process beside it: p50 {own_beside * 1000:.1f} ms")
                rows.append((mode, p50, p95, rate, failed, own_p50, own_beside))
            finally:
                if own is not None:
                    own.close()
                for process in processes:
                    process.stop()
                if cleanup:
                    cleanup()

    print(
        "\n| mode | p50 latency | p95 latency | in process p50 | p50 / (1.5 in process + 10 ms) | burst jobs/s "
        "| in process p50 beside the burst | burst / (0.6 x 2 slots x in-process rate) | fresh script p50 | failed |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for mode, p50, p95, rate, failed, own, own_beside in rows:
        print(
            f"| {mode} | {p50 * 1000:.1f} ms | {p95 * 1000:.1f} ms | {own * 1000:.1f} ms | "
            f"{p50 / (1.5 * own + 0.010):.2f} | {rate:.1f} | {own_beside * 1000:.1f} ms | "
            f"{rate / (0.6 * 2 / own_beside):.2f} | {fresh_p50 * 1000:.0f} ms | {failed} |"
        )
    print("\nWhere a job's latency goes (p50 of each hop, ms):\n")
    print(f"| hop | {' | '.join(hops)} |")
    print(f"|---|{'---|' * len(hops)}")
    for index, hop in enumerate(HOPS):
        print(f"| {hop} | {' | '.join(f'{medians[index] * 1000:.1f}' for medians in hops.values())} |")


if __name__ == "__main__":
    main()
