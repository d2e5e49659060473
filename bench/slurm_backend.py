"""40 small jobs through labtrain on a SLURM queue against the same 40 `sbatch`ed by hand, in one
run: the ratio of the bursts' wall times. Goal (issue 23): labtrain adds at most 10 %.

Each job is an iris KNN (5 neighbours, 20 % held out, seed 0) whose model is saved with skops.
Through labtrain: the 40 submitted over HTTP at once; the dispatcher keeps `--depth` of them in
SLURM (fair share picks the rest as slots free), each runs `labtrain worker run-one` on the node
(claim, train, score, save the model, record the outcome). The deployment is the API, the
dispatcher, PostgreSQL and Redis, and no Celery worker: a SLURM queue needs none.

By hand, like with like: the same 40 `sbatch`ed at once, each a script that trains, scores and
saves the same model, run by the same Python (this one, the project's virtual environment) with
the same sbatch resources (1 CPU, 2048 MB). Each hand job pays its own imports, as each labtrain
job does (scikit-learn, and skops, whose import loads every scikit-learn estimator and PyTorch):
it is a script a student would sbatch. One difference is labtrain's: run-one ends without the
interpreter's teardown once its outcome is committed, where the script ends as any Python does
(`--hand-exits-at-once`: the hand job ends as run-one does, to see labtrain's own cost alone).

The burst ends when the last job has its result: labtrain's `succeeded`, the hand job's result
file. Both run on the same one-node SLURM cluster the tests use (tests/support/slurm_cluster.py:
slurm-wlm, run as root); the hand burst runs before and after labtrain's, and its mean is the
baseline. Where the time goes, per burst, from SLURM's own start and end times (whole seconds):
each job's mean time on the node, and how full the node's CPUs were between the first start
and the last end.

    .venv/bin/python bench/slurm_backend.py [--jobs 40] [--depth 4] [--hand-exits-at-once]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.service_process import start_service
from service.slurm.commands import ACTIVE
from tests.support.slurm_cluster import CPU_PARTITION, SlurmCluster

SPEC = {
    "dataset": "iris",
    "algorithm": "knn",
    "params": {"n_neighbors": 5},
    "evaluation": {"test_size": 0.2, "seed": 0},
    "device": "cpu",
}
# What a hand job runs: the training a labtrain classic job does, without labtrain.
HAND_JOB = textwrap.dedent(
    """
    import json, os, sys
    import skops.io
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import KNeighborsClassifier

    x, y = load_iris(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    model = KNeighborsClassifier(n_neighbors=5).fit(x_train, y_train)
    skops.io.dump(model, sys.argv[1] + ".skops")
    with open(sys.argv[1] + ".tmp", "w") as out:
        json.dump({"accuracy": model.score(x_test, y_test)}, out)
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    """
)


# --hand-exits-at-once: the hand job ends as run-one does, without the interpreter's teardown.
EXIT_AT_ONCE = "sys.stdout.flush()\nos._exit(0)\n"


def hand_burst(cluster: SlurmCluster, folder: Path, jobs: int, exit_at_once: bool = False) -> float:
    """Seconds from the first sbatch to the last hand job's result (its jobs: named after `folder`)."""
    folder.mkdir()
    script = folder / "train.py"
    script.write_text(HAND_JOB + (EXIT_AT_ONCE if exit_at_once else ""))
    results = [folder / f"result-{n}.json" for n in range(jobs)]
    started = time.perf_counter()
    for result in results:
        cluster.run(
            "sbatch", "--parsable", f"--partition={CPU_PARTITION}", f"--job-name={folder.name}", "--nodes=1", "--ntasks=1",
            "--cpus-per-task=1", "--mem=2048M", f"--output={folder / 'slurm-%j.out'}",
            f"--wrap=exec {sys.executable} {script} {result}",
        )  # fmt: skip
    while not all(result.exists() for result in results):
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    for result in results:
        assert json.loads(result.read_text())["accuracy"] > 0.9
    return elapsed


def labtrain_burst(home: Path, jobs: int, depth: int, per_allocation: int) -> tuple[float, int]:
    """Seconds from the first submit to the last job's `succeeded`, and the jobs that failed."""
    queues = {
        "cpu": {
            "backend": "slurm",
            "partition": CPU_PARTITION,
            "depth": depth,
            "poll_s": 1,
            "jobs_per_allocation": per_allocation,
        }
    }
    client, processes, cleanup = start_service(
        "postgres+redis", home, LABTRAIN_QUEUES=json.dumps(queues), LABTRAIN_MAX_QUEUED="1000"
    )
    processes[1].stop()  # the stack's Celery worker: a SLURM queue's deployment runs none
    try:
        started = time.perf_counter()
        ids = [client.post("/api/v1/jobs", json=SPEC).json()["id"] for _ in range(jobs)]
        finished = [client.follow(job_id, timeout=1800) for job_id in ids]  # the last returns at the burst's end
        elapsed = time.perf_counter() - started
        return elapsed, sum(1 for job in finished if job["status"] != "succeeded")
    finally:
        for process in processes:
            process.stop()
        if cleanup:
            cleanup()


def on_the_node(cluster: SlurmCluster, name_prefix: str, exclude: frozenset | set = frozenset()) -> tuple:
    """SLURM's view of one burst's jobs: their mean seconds from start to end on the node, and the
    share of the node's CPU-seconds they held between the first start and the last end. Read once
    the last of them has ended (a result is written before its process exits); jobs SLURM never
    started (a submission labtrain cancelled) count for nothing. Also returns the SLURM ids read
    (`exclude`: the ids of an earlier burst, still listed)."""
    deadline = time.monotonic() + 30
    while True:
        out = cluster.run(
            "squeue", "--noheader", "--states=all", f"--partition={CPU_PARTITION}", "--format=%j|%T|%S|%e|%i"
        )
        rows = [line.split("|") for line in out.stdout.split() if line.startswith(name_prefix)]
        rows = [row for row in rows if row[4] not in exclude]
        if all(state not in ACTIVE for _, state, _, _, _ in rows) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    spans = []
    for _, _, start, end, _ in rows:
        try:
            spans.append((datetime.fromisoformat(start), datetime.fromisoformat(end)))
        except ValueError:  # never started, or still running at the deadline
            continue
    held = sum((end - start).total_seconds() for start, end in spans)
    window = (max(end for _, end in spans) - min(start for start, _ in spans)).total_seconds()
    ids = {row[4] for row in rows}
    return held / len(spans), held / (cluster.cpus * window) if window else 1.0, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--depth", type=int, default=4, help="jobs labtrain keeps submitted to SLURM, not started")
    parser.add_argument(
        "--jobs-per-allocation", type=int, default=8, help="the queue's jobs_per_allocation (the second labtrain burst)"
    )
    parser.add_argument(
        "--hand-exits-at-once", action="store_true", help="the hand job skips the interpreter's teardown, as run-one"
    )
    args = parser.parse_args()
    per_allocation = args.jobs_per_allocation
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        cluster = SlurmCluster(root / "slurm")
        cluster.start()
        os.environ["SLURM_CONF"] = str(cluster.conf)  # the dispatcher's sbatch and squeue reach it
        try:
            load = os.getloadavg()[0]
            nodes = {}
            before = hand_burst(cluster, root / "hand-before", args.jobs, args.hand_exits_at_once)
            nodes["hand-before"] = on_the_node(cluster, "hand-before")
            one_each, failed_one = labtrain_burst(root / "labtrain-one", args.jobs, args.depth, 1)
            nodes["labtrain, one a SLURM job"] = on_the_node(cluster, "labtrain-")
            shared, failed_shared = labtrain_burst(root / "labtrain-shared", args.jobs, args.depth, per_allocation)
            nodes[f"labtrain, {per_allocation} a SLURM job"] = on_the_node(
                cluster, "labtrain-", exclude=nodes["labtrain, one a SLURM job"][2]
            )
            after = hand_burst(cluster, root / "hand-after", args.jobs, args.hand_exits_at_once)
            nodes["hand-after"] = on_the_node(cluster, "hand-after")
        finally:
            cluster.stop()
    baseline = statistics.mean([before, after])
    print(f"SLURM node: {cluster.cpus} CPUs; load average at the start: {load:.2f}")
    ending = "at once, as run-one" if args.hand_exits_at_once else "with the interpreter's teardown"
    print(f"{args.jobs} iris KNN jobs, labtrain depth {args.depth}; the hand job ends {ending}")
    print(f"by hand (sbatch):                  {before:7.1f} s before, {after:7.1f} s after, mean {baseline:7.1f} s")
    for label, seconds, failed in (
        ("one job a SLURM job", one_each, failed_one),
        (f"jobs_per_allocation {per_allocation}", shared, failed_shared),
    ):
        print(
            f"through labtrain, {label + ':':24} {seconds:7.1f} s ({failed} failed); / by hand {seconds / baseline:5.2f}"
        )
    ratio = shared / baseline
    print(
        f"labtrain / by hand, the queue set for small jobs (jobs_per_allocation {per_allocation}): {ratio:.2f} "
        f"(goal: at most 1.10: {'met' if ratio <= 1.10 else 'not met'})"
    )
    for name, (seconds, full, ids) in nodes.items():
        print(
            f"on the node, {name:28} {len(ids):3} SLURM jobs, each {seconds:5.2f} s on average; "
            f"CPUs held {100 * full:5.1f} %"
        )
    subprocess.run(["uptime"], check=False)


if __name__ == "__main__":
    main()
