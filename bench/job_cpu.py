"""The CPU time a small job and a burst job cost each process of a deployment, this tree against
another revision (`--against`, checked out in a temporary worktree), the two alternating in the
same run (this, other, other, this, ...: the second of two runs on this machine tends to run
slower), on PostgreSQL + Redis and on the embedded defaults.

Each measurement starts a fresh deployment (bench/service_process.py) of the tree it measures,
warms it up, then runs bench/job_latency.py's `--jobs` sequential jobs (each followed on its
event stream, then read with a GET) and its burst of `--burst` jobs at once, and reads every
process's CPU time (psutil; PostgreSQL's backends of its database and Redis included:
bench/profile_job_path.py's `cpu_times`). CPU time is what a shared server's students pay for,
and it moves less with the machine's load than a latency does.

    .venv/bin/python bench/job_cpu.py --against REV [--rounds 2] [--jobs 30] [--burst 200]
        [--modes postgres+redis embedded]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve()
TREE = HERE.parents[1]
MODES = ("postgres+redis", "embedded")


def measure(tree: Path, mode: str, jobs: int, burst: int) -> dict[str, dict[str, float]]:
    """{window: {process: CPU ms a unit}} for one deployment of `tree` (run in its own interpreter)."""
    sys.path.insert(0, str(tree))
    from concurrent.futures import ThreadPoolExecutor

    from bench.job_latency import SPEC, burst_throughput
    from bench.profile_job_path import cpu_spent, cpu_times
    from bench.service_process import start_service

    found = {}
    with contextlib.ExitStack() as teardown:  # last in, first out: the processes stop first
        home = Path(tempfile.mkdtemp(prefix="labtrain-job-cpu-"))
        teardown.callback(shutil.rmtree, home, ignore_errors=True)
        client, processes, cleanup = start_service(mode, home, LABTRAIN_MAX_QUEUED="1000")
        if cleanup:
            teardown.callback(cleanup)
        for process in processes:
            teardown.callback(process.stop)
        tops = [p.proc.pid for p in processes]
        url = processes[0].env.get("LABTRAIN_DATABASE_URL")
        database = url.rsplit("/", 1)[-1] if url else None
        known: dict[int, str] = {}
        with ThreadPoolExecutor(8) as pool:  # every API process and pool process serves one first
            list(pool.map(lambda _: client.follow(client.post("/api/v1/jobs", json=SPEC).json()["id"]), range(16)))
        for window, units, work in (
            ("job", jobs, lambda: [one_job(client, SPEC) for _ in range(jobs)]),
            ("burst job", burst, lambda: burst_throughput(client, burst)),
        ):
            before = cpu_times(tops, database, known)
            work()
            spent = cpu_spent(before, cpu_times(tops, database, known))
            found[window] = {label: seconds * 1000 / units for label, seconds in spent.items()}
            found[window]["all"] = sum(spent.values()) * 1000 / units
    return found


def one_job(client, spec: dict) -> None:
    """bench/job_latency.py's sequential job: submitted, followed on its event stream, then read."""
    job_id = client.post("/api/v1/jobs", json=spec).json()["id"]
    client.wait_for_end(job_id)
    assert client.get(f"/api/v1/jobs/{job_id}").json()["status"] == "succeeded"


def run_in(tree: Path, mode: str, options) -> dict[str, dict[str, float]]:
    """`measure` in a fresh interpreter whose imports (and the deployment's) come from `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    args = [sys.executable, str(HERE), "--measure", mode, "--tree", str(tree)]
    args += ["--jobs", str(options.jobs), "--burst", str(options.burst)]
    done = subprocess.run(args, cwd=tree, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"the measurement in {tree} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def worktree(revision: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="labtrain-against-")) / "tree"
    subprocess.run(["git", "-C", str(TREE), "worktree", "add", "--detach", str(folder), revision], check=True)
    (folder / ".venv").symlink_to(TREE / ".venv")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", help="the revision to compare with (a commit, a tag, HEAD~1)")
    parser.add_argument("--rounds", type=int, default=2, help="pairs of deployments for each backend")
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--measure", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.measure:
        print(json.dumps(measure(options.tree, options.measure, options.jobs, options.burst)))
        return
    if not options.against:
        parser.error("--against REV is needed")
    other = worktree(options.against)
    trees = {"this tree": TREE, options.against: other}
    found: dict = defaultdict(lambda: defaultdict(list))  # (mode, window, process) -> tree -> [ms]
    try:
        for mode in options.modes:
            for round_ in range(options.rounds):
                order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
                for name in order:
                    print(f"{mode}, round {round_ + 1}: {name} ({time.strftime('%H:%M')})", flush=True)
                    for window, processes in run_in(trees[name], mode, options).items():
                        for process, ms in processes.items():
                            found[(mode, window, process)][name].append(ms)
    finally:
        subprocess.run(["git", "-C", str(TREE), "worktree", "remove", "--force", str(other)], check=False)
        shutil.rmtree(other.parent, ignore_errors=True)  # the temporary folder around it
    this, against = trees
    print(f"\nCPU ms a unit: the median of {options.rounds} deployments each (their lowest and highest)\n")
    print(f"| backend | unit | process | {this} | {against} | {against} / {this} |")
    print("|---|---|---|---|---|---|")
    for (mode, window, process), by_tree in sorted(found.items(), key=_row_order):
        now, before = (statistics.median(by_tree[name]) if by_tree[name] else 0.0 for name in trees)
        spread = [
            f"{statistics.median(v):.2f} ({min(v):.1f}-{max(v):.1f})" if v else ""
            for v in (by_tree[name] for name in trees)
        ]
        ratio = f"{before / now:.2f}" if now else ""
        label = f"**{process}**" if process == "all" else process
        print(f"| {mode} | {window} | {label} | {' | '.join(spread)} | {ratio} |")


def _row_order(item) -> tuple:
    (mode, window, process), _ = item
    return mode, window, process != "all", process


if __name__ == "__main__":
    main()
