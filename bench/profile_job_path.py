"""Where a small job's and a search trial's milliseconds go, by process and by phase, on
PostgreSQL + Redis and on the embedded defaults (SQLite + serverless broker).

A real deployment is started (bench/service_process.py: the API, the dispatcher and a worker of
2 slots; or `labtrain up`) and warmed up (16 jobs at once, so that every API process has served
one, 3 more and a 4-trial search); then three windows, each run twice:
  quiet   a few seconds with nothing submitted: what the deployment costs idle (its polling);
  job     `--jobs` iris KNN jobs one after another, each followed on its event stream
          (bench/job_latency.py's job);
  search  one random search of `--trials` trials (bench/search_overhead.py's search);
  burst   `--burst` jobs submitted at once by 16 threads (bench/job_latency.py's burst).
The first run is measured without a profiler: each process's CPU time (psutil; PostgreSQL's
backends of this database and Redis included), the wall time, and every SQL statement (each
process writes one line per statement: bench/profile_hook/sitecustomize.py, put on their
PYTHONPATH). The second run is sampled by py-spy (one `record --nonblocking` per process,
idle threads left out); the samples are put in phases by the project's functions on their
stacks (PROJECT_PHASES below; the deepest match wins) and split each process's CPU time of
the first run in those shares. Samples of the polling py-spy saw outside the workload (while
it attached) are taken off at the quiet window's rate.

    .venv/bin/python bench/profile_job_path.py [--jobs 50] [--trials 100] [--burst 200] [--rate 100]
        [--modes postgres+redis embedded] [--keep DIR]

Needs py-spy (a test dependency: `make install` puts it in .venv) and the right to trace the
service's processes (root, or ptrace allowed for the user).
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.job_latency import SPEC, burst_throughput
from bench.search_overhead import MODES, search_spec
from bench.service_process import start_service

HOOK = Path(__file__).resolve().parent / "profile_hook"
ROLES = {
    "api": "API (gunicorn master)",
    "api+child": "API (gunicorn worker)",
    "dispatcher": "dispatcher",
    "worker": "worker (Celery parent)",
    "worker+child": "worker (pool process)",
    "up": "up (supervisor)",
}

# (phase, file part, function part): a sample is in the phase of the deepest project frame that
# matches (a rule naming a function before one naming only its file); None matches any function
# of the file. Library rules count only where no project rule matched (the broker's code under
# the dispatcher's send is the send). Imports are their own cost wherever they happen.
PROJECT_PHASES: list[tuple[str, str, str | None]] = [
    # API
    ("auth (token, user)", "api/auth.py", None),
    ("submit (validate, insert, event)", "api/jobs.py", "submit"),
    ("submit (validate, insert, event)", "jobs/submission.py", None),
    ("job reads (GET job, list)", "api/jobs.py", "get_job"),
    ("job reads (GET job, list)", "api/jobs.py", "list_jobs"),
    ("job reads (GET job, list)", "api/serialize.py", None),
    ("event stream (SSE)", "api/jobs.py", "events"),
    ("event stream (SSE)", "api/streams.py", None),
    ("event stream (SSE)", "api/event_feeds.py", None),
    ("stream hub: wake-ups and polling", "api/stream_hub.py", None),
    # dispatcher
    ("wake-ups and polling", "service/dispatcher.py", "_wait_for_a_change"),
    ("wake-ups and polling", "core/wakeups.py", "changed"),
    ("wake-ups and polling", "core/wakeups.py", "wait"),
    ("dispatcher: is a round needed", "service/dispatcher.py", "round_needed"),
    ("dispatcher: round (reap, resend, fill)", "service/dispatcher.py", "run_round"),
    ("dispatcher: broker send", "service/dispatcher.py", "_send"),
    ("search: which searches need a step", "search/driver.py", "pending_searches"),
    ("search: step (lease, read trials, state file)", "search/driver.py", "step"),
    ("search: step (lease, read trials, state file)", "search/state.py", None),
    ("search: Optuna study and journal", "search/driver.py", "_study"),
    ("search: Optuna study and journal", "search/studies.py", None),
    ("search: tell (Optuna, strategy)", "search/driver.py", "_tell"),
    ("search: tell (Optuna, strategy)", "search/driver.py", "_record"),
    ("search: ask (Optuna)", "search/driver.py", "_ask"),
    ("search: trial submit (validate, insert, event)", "search/driver.py", "_submit_all"),
    ("search: progress and finish", "search/driver.py", "_record_progress"),
    ("search: progress and finish", "search/driver.py", "_finish"),
    # worker
    ("worker heartbeat thread", "workers/heartbeat.py", None),
    ("runner (set-up, job log, watch start/stop)", "workers/runner.py", None),
    ("runner (set-up, job log, watch start/stop)", "workers/celery_app.py", "run_job"),
    ("job watch thread (heartbeat, cancel look)", "workers/watch.py", "_run"),
    ("claim", "jobs/lifecycle.py", "claim"),
    ("job families registry", "jobs/families.py", None),
    ("spec validation (pydantic model_validate)", "pydantic/", "model_validate"),
    ("data load", "workers/trainers/", "load_data"),
    ("training work", "workers/trainers/", "train"),
    ("events/progress writes", "workers/reporter.py", None),
    ("outcome write", "workers/runner.py", "_succeed"),
    ("outcome write", "workers/runner.py", "_finish"),
    ("outcome write", "workers/runner.py", "_succeed_with_result"),
    ("model or state file write", "core/storage.py", "atomic_path"),
    ("model or state file write", "workers/trainers/", "write_skops"),
    ("supervisor (`labtrain up`)", "cli/supervisor.py", None),
    ("this benchmark's SQL log (bench/profile_hook)", "sitecustomize.py", None),
]
LIBRARY_PHASES: list[tuple[str, str, str | None]] = [
    ("HTTP server and Flask", "gunicorn/", None),
    ("HTTP server and Flask", "flask/", None),
    ("HTTP server and Flask", "werkzeug/", None),
    ("HTTP server and Flask", "a2wsgi/", None),
    ("HTTP server and Flask", "anyio/", None),
    ("HTTP server and Flask", "uvicorn/", None),
    ("HTTP server and Flask", "uvicorn_worker/", None),
    ("HTTP server and Flask", "h11/", None),
    ("HTTP server and Flask", "starlette/", None),
    ("HTTP server and Flask", "asyncio/", None),
    ("broker and task protocol (Celery, kombu)", "celery/", None),
    ("broker and task protocol (Celery, kombu)", "kombu/", None),
    ("broker and task protocol (Celery, kombu)", "billiard/", None),
    ("broker and task protocol (Celery, kombu)", "redis/", None),
]
IMPORTS = "_find_and_load"
# Leaf frames of a thread that waits (in a C call py-spy cannot see into, so --nonblocking may
# count it as busy): left out, since the samples only split CPU time. A wait for PostgreSQL's
# answer is its backend's CPU time, not this process's.
WAITING: list[tuple[str, str]] = [
    ("selectors.py", "select"),
    ("threading.py", "wait"),
    ("concurrent/futures/thread.py", "_worker"),
    ("queue.py", "get"),
    ("kombu/transport/virtual/base.py", "drain_events"),
    ("psycopg/connection.py", "wait"),
    ("psycopg/waiting.py", "wait"),
]
SQL_FRAMES = ("sqlalchemy/", "psycopg/", "sqlite3/")


def frame_parts(frame: str) -> tuple[str, str]:
    """("function", "file:line") from py-spy's `function (file:line)`."""
    function, _, where = frame.rpartition(" (")
    return (function or frame), where.rstrip(")")


def _ordered(rules):
    return sorted(rules, key=lambda rule: rule[2] is None)  # a named function before a whole file


ORDERED = (_ordered(PROJECT_PHASES), _ordered(LIBRARY_PHASES))


def phase_of(frames: list[str]) -> str:
    parts = [frame_parts(frame) for frame in frames]
    if any(function == IMPORTS for function, _ in parts):
        return "imports"
    for rules in ORDERED:
        found = None
        for function, where in parts:
            for phase, part, name in rules:
                if part in where and (name is None or function.rsplit(".", 1)[-1] == name):
                    found = phase
                    break
        if found:
            return found
    return "other (interpreter and libraries)"


@dataclass
class Window:
    name: str
    unit: str  # what `units` counts: "job", "trial" ("second" for the quiet window)
    units: int  # jobs or trials in it (1 for the quiet window)
    seconds: float  # the workload's own wall time, without the profiler
    recorded_s: float  # py-spy's from start to stop, in the second pass
    sampled_s: float = 0.0  # the workload's wall time under py-spy
    profiler_s: float = 0.0  # py-spy's own CPU time
    samples: Counter = field(default_factory=Counter)  # (process, phase) -> samples
    sql_samples: Counter = field(default_factory=Counter)  # (process, phase) -> samples inside SQL code
    cpu_s: Counter = field(default_factory=Counter)  # process -> CPU seconds (psutil)
    statements: Counter = field(default_factory=Counter)  # (process, database, kind) -> count
    callers: Counter = field(default_factory=Counter)  # (process, kind, callers) -> count


# -- the deployment's processes -------------------------------------------------------------------
def role_of(proc: psutil.Process, known: dict[int, str], members: dict[int, psutil.Process]) -> str:
    """`api`, `dispatcher`, `worker`, `up` from `python -m service ROLE`; `+child` for a process
    forked from one of the same role (a gunicorn worker, a Celery pool process)."""
    if proc.pid in known:
        return known[proc.pid]
    try:
        args, parent = proc.cmdline(), proc.ppid()
    except psutil.Error:
        return "gone"
    words = [a for a in args[args.index("service") + 1 :] if not a.startswith("-")] if "service" in args else []
    parent_role = role_of(members[parent], known, members).split("+")[0] if parent in members else ""
    own = words[0] if words else f"{parent_role or 'unknown'}"
    if own == parent_role:
        own = f"{own}+child"
    known[proc.pid] = own
    return own


def deployment(tops: list[int]) -> dict[int, psutil.Process]:
    found = {}
    for pid in tops:
        try:
            top = psutil.Process(pid)
            found.update((proc.pid, proc) for proc in [top, *top.children(recursive=True)])
        except psutil.NoSuchProcess:
            continue
    return found


def backing_services(database: str | None) -> dict[int, tuple[psutil.Process, str]]:
    """PostgreSQL's backends of this benchmark's database, and Redis."""
    found = {}
    for proc in psutil.process_iter(["name", "cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if database and proc.info["name"] == "postgres" and f" {database} " in line:
            found[proc.pid] = (proc, "PostgreSQL (this database's backends)")
        elif database and (proc.info["name"] or "").startswith("redis-server"):
            found[proc.pid] = (proc, "Redis")
    return found


def cpu_times(tops: list[int], database: str | None, known: dict[int, str]) -> dict[int, tuple[str, float]]:
    """pid -> (process label, CPU seconds so far)."""
    out = {}
    members = deployment(tops)
    procs = {}
    for pid, proc in members.items():
        role = role_of(proc, known, members)
        procs[pid] = (proc, ROLES.get(role, role))
    procs.update(backing_services(database))
    for pid, (proc, label) in procs.items():
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        out[pid] = (label, times.user + times.system)
    return out


def cpu_spent(before: dict, after: dict) -> Counter:
    spent: Counter = Counter()
    for pid, (label, seconds) in after.items():
        spent[label] += seconds - before.get(pid, (label, 0.0))[1]
    return spent


# -- py-spy ---------------------------------------------------------------------------------------
def py_spy() -> str:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not found:
        sys.exit("py-spy is not installed: make install (it is among the test dependencies)")
    return found


def start_recording(pids: list[int], folder: Path, name: str, rate: int) -> list[tuple[subprocess.Popen, Path]]:
    """One py-spy per process (the deployment's processes live as long as it does; following
    children with --subprocesses costs py-spy twice the CPU)."""
    recorders = []
    for pid in pids:
        out = folder / f"{name}-{pid}.txt"
        command = [py_spy(), "record", "--pid", str(pid), "--nonblocking", "--rate", str(rate)]
        command += ["--format", "raw", "--output", str(out)]
        recorders.append((subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), out))
    time.sleep(1.0)  # py-spy attaches
    return recorders


def stop_recording(recorders, pids: list[int]) -> dict[int, Path]:
    for proc, _ in recorders:
        proc.send_signal(signal.SIGINT)
    outputs = {}
    for pid, (proc, out) in zip(pids, recorders, strict=True):
        _, err = proc.communicate(timeout=60)
        if not out.exists():
            raise RuntimeError(f"py-spy wrote nothing for {pid}: {err.decode(errors='replace')[-2000:]}")
        outputs[pid] = out
    return outputs


def read_samples(paths: dict[int, Path], window: Window, known: dict[int, str]) -> None:
    for pid, path in paths.items():
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = stack.split(";")
            function, where = frame_parts(frames[-1])
            if any(part in where and function.rsplit(".", 1)[-1].startswith(name) for part, name in WAITING):
                continue
            role = known.get(pid, "gone")
            process = ROLES.get(role, role)
            code = [f for f in frames if not f.startswith("process ")]
            key = (process, phase_of(code))
            window.samples[key] += int(count)
            if any(part in frame for frame in code for part in SQL_FRAMES):
                window.sql_samples[key] += int(count)


# -- SQL statements -------------------------------------------------------------------------------
def read_statements(folder: Path, window: Window, start: float, end: float) -> None:
    for path in folder.glob("sql-*.tsv"):
        with path.open(newline="") as lines:
            for row in csv.reader(lines, delimiter="\t"):
                if len(row) < 6 or not start <= float(row[0]) <= end:
                    continue
                process = ROLES.get(row[1], row[1])
                database = "broker" if row[3] == "broker.db" else "jobs database"
                window.statements[(process, database, row[4])] += 1
                window.callers[(process, row[4], row[5])] += 1


# -- the workload ---------------------------------------------------------------------------------
def run_jobs(client, jobs: int) -> None:
    for _ in range(jobs):
        job_id = client.post("/api/v1/jobs", json=SPEC).json()["id"]
        assert client.follow(job_id)["status"] == "succeeded"


def run_search(client, trials: int) -> None:
    job_id = client.post("/api/v1/jobs", json=search_spec(trials)).json()["id"]
    job = client.follow(job_id, timeout=1800)
    assert job["status"] == "succeeded", job


def profile_mode(mode: str, options, folder: Path) -> list[Window]:
    sql_log = folder / "sql"
    sql_log.mkdir(parents=True)
    path = os.pathsep.join(p for p in (str(HOOK), os.environ.get("PYTHONPATH", "")) if p)
    home = Path(tempfile.mkdtemp(prefix="labtrain-profile-"))
    client, processes, cleanup = start_service(
        mode, home, LABTRAIN_MAX_QUEUED="1000", PYTHONPATH=path, LABTRAIN_BENCH_SQL_LOG=str(sql_log)
    )
    tops = [p.proc.pid for p in processes]
    url = processes[0].env.get("LABTRAIN_DATABASE_URL")
    database = url.rsplit("/", 1)[-1] if url else None
    known: dict[int, str] = {}
    windows = []
    try:
        # Warm-up: connections, caches, each pool process's and each API process's first job
        # (a gunicorn worker imports the job families at its first submit).
        with ThreadPoolExecutor(8) as pool:  # at once, so that every API process gets some
            list(pool.map(lambda _: run_jobs(client, 1), range(options.warmup)))
        run_jobs(client, 3)
        run_search(client, 4)
        plan = [
            ("quiet", "second", 1, lambda: time.sleep(options.quiet)),
            ("job", "job", options.jobs, lambda: run_jobs(client, options.jobs)),
            ("search", "trial", options.trials, lambda: run_search(client, options.trials)),
            ("burst", "burst job", options.burst, lambda: burst_throughput(client, options.burst)),
        ]
        for name, unit, units, work in plan:
            if not units:
                continue
            # First without the profiler: CPU time, statements and wall time as they are; then
            # again under py-spy, for how each process's time splits into phases.
            print(f"{mode}: {name} window", flush=True)
            members = deployment(tops)
            for proc in members.values():
                role_of(proc, known, members)
            cpu_before = cpu_times(tops, database, known)
            start, wall = time.time(), time.perf_counter()
            work()
            seconds, end = time.perf_counter() - wall, time.time()
            window = Window(name, unit, units, seconds, 0.0)
            window.cpu_s = cpu_spent(cpu_before, cpu_times(tops, database, known))
            read_statements(sql_log, window, start, end)
            print(f"{mode}: {name} window under py-spy", flush=True)
            pids = list(deployment(tops))
            used = resource.getrusage(resource.RUSAGE_CHILDREN)
            recorded = time.perf_counter()
            recorders = start_recording(pids, folder, f"{mode}-{name}", options.rate)
            wall = time.perf_counter()
            work()
            window.sampled_s = time.perf_counter() - wall
            outputs = stop_recording(recorders, pids)
            window.recorded_s = time.perf_counter() - recorded
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            window.profiler_s = after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime
            read_samples(outputs, window, known)
            windows.append(window)
    finally:
        for process in processes:
            process.stop()
        if cleanup:
            cleanup()
        shutil.rmtree(home, ignore_errors=True)
    return windows


# -- the tables -----------------------------------------------------------------------------------
def phase_ms(window: Window, quiet: Window) -> dict[tuple[str, str], tuple[float, float]]:
    """(process, phase) -> (ms, of it in SQL code) per job or trial: each process's CPU time
    (measured without the profiler) split in the shares of its samples. Samples of the polling
    that went on while py-spy ran outside the workload are taken off at the quiet window's rate."""
    extra = max(0.0, window.recorded_s - window.sampled_s)

    def corrected(counts: Counter, idle: Counter, key) -> float:
        return max(0.0, counts[key] - idle[key] / quiet.recorded_s * extra)

    by_process: dict[str, float] = defaultdict(float)
    kept = {}
    for key in window.samples:
        kept[key] = (
            corrected(window.samples, quiet.samples, key),
            corrected(window.sql_samples, quiet.sql_samples, key),
        )
        by_process[key[0]] += kept[key][0]
    out = {}
    for key, (samples, sql) in kept.items():
        cpu_ms = window.cpu_s[key[0]] * 1000 / window.units
        share = samples / by_process[key[0]] if by_process[key[0]] else 0.0
        out[key] = (cpu_ms * share, cpu_ms * share * (sql / samples if samples else 0.0))
    return out


def report(mode: str, windows: list[Window], rate: int) -> None:
    quiet, *work = windows
    per = [f"per {window.unit}" for window in work]
    print(f"\n### {MODES[mode]}\n")
    for window in work:
        print(
            f"- {window.name} window: {window.units} {window.unit}s in {window.seconds:.1f} s "
            f"({window.seconds / window.units * 1000:.0f} ms a {window.unit}); under py-spy "
            f"{window.sampled_s:.1f} s, py-spy itself {window.profiler_s / window.recorded_s * 1000:.0f} ms of CPU a second"
        )
    print(f"- quiet window: {quiet.seconds:.1f} s with nothing submitted\n")
    print("CPU time by process (psutil, without the profiler), ms:\n")
    print("| process | " + " | ".join(per) + " | idle, per second |")
    print("|---|" + "---|" * len(work) + "---|")
    labels = sorted(set().union(*(window.cpu_s for window in work)), key=lambda k: -sum(w.cpu_s[k] for w in work))
    for label in labels:
        row = [window.cpu_s[label] * 1000 / window.units for window in work]
        print(
            f"| {label} | "
            + " | ".join(f"{v:.1f}" for v in row)
            + f" | {quiet.cpu_s[label] * 1000 / quiet.seconds:.1f} |"
        )
    row = [sum(window.cpu_s.values()) * 1000 / window.units for window in work]
    print(
        "| all | "
        + " | ".join(f"{v:.1f}" for v in row)
        + f" | {sum(quiet.cpu_s.values()) * 1000 / quiet.seconds:.1f} |"
    )
    print(f"\nThat CPU time by phase (split by py-spy's samples at {rate} Hz, busy threads only), ms:\n")
    print("| process | phase | " + " | ".join(f"{p} | of it in SQL code" for p in per) + " | idle, per second |")
    print("|---|---|" + "---|---|" * len(work) + "---|")
    phases = [phase_ms(window, quiet) for window in work]
    sampled = {key[0] for phase in phases for key in phase}
    for label in set().union(*(window.cpu_s for window in work)) - sampled:  # PostgreSQL, Redis: no Python stacks
        key = (label, "all (not sampled)")
        for window, phase in zip(work, phases):
            phase[key] = (window.cpu_s[label] * 1000 / window.units, 0.0)
        quiet.samples[key] = 1
    zero = (0.0, 0.0)
    keys = sorted(set().union(*phases), key=lambda k: (k[0], -sum(phase.get(k, zero)[0] for phase in phases)))
    for key in keys:
        row = [v for phase in phases for v in phase.get(key, zero)]
        if max(row) < 0.5:
            continue
        idle_ms = quiet.cpu_s[key[0]] * 1000 / quiet.seconds * _share(quiet, key)
        print(f"| {key[0]} | {key[1]} | " + " | ".join(f"{v:.1f}" for v in row) + f" | {idle_ms:.1f} |")
    print("\nSQL statements (with BEGIN, COMMIT and pings) by process, " + " / ".join(per) + " / per idle second:\n")
    print("| process | database | statement | " + " | ".join(per) + " | idle, per second |")
    print("|---|---|---|" + "---|" * len(work) + "---|")
    everything = set(quiet.statements).union(*(window.statements for window in work))
    keys = sorted(everything, key=lambda k: (k[0], k[1], -sum(w.statements[k] for w in work)))
    totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0] * (len(work) + 1))
    for key in keys:
        row = [window.statements[key] / window.units for window in work]
        row.append(quiet.statements[key] / quiet.seconds)
        for i, v in enumerate(row):
            totals[key[:2]][i] += v
        if max(row) >= 0.05:
            print(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    for (process, database), row in sorted(totals.items()):
        print(f"| {process} | {database} | **all** | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    print("\nWho issues the statements (the nearest project functions), " + " / ".join(per) + ":\n")
    print("| process | statement | from | " + " | ".join(per) + " |")
    print("|---|---|---|" + "---|" * len(work))
    keys = sorted(set().union(*(w.callers for w in work)), key=lambda k: -sum(w.callers[k] for w in work))
    for key in keys:
        row = [window.callers[key] / window.units for window in work]
        if max(row) >= 0.5:
            process, kind, callers = key
            print(
                f"| {process} | {kind} | {callers.replace('<', ' < ')} | " + " | ".join(f"{v:.2f}" for v in row) + " |"
            )


def _share(window: Window, key) -> float:
    total = sum(n for k, n in window.samples.items() if k[0] == key[0])
    return window.samples[key] / total if total else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--burst", type=int, default=200, help="jobs submitted at once (0: no burst window)")
    parser.add_argument("--quiet", type=float, default=5.0, help="seconds of the idle window")
    parser.add_argument("--warmup", type=int, default=16, help="jobs submitted at once before the windows")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples a second")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--keep", type=Path, help="keep py-spy's raw stacks and the SQL lines here")
    options = parser.parse_args()
    py_spy()
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}, {os.cpu_count()} cores")
    folder = Path(tempfile.mkdtemp(prefix="labtrain-profile-out-"))
    try:
        results = [(mode, profile_mode(mode, options, folder / mode)) for mode in options.modes]
        print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        for mode, windows in results:
            report(mode, windows, options.rate)
    finally:
        if options.keep:
            shutil.copytree(folder, options.keep, dirs_exist_ok=True)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
