"""What the sandbox and the service add to a student's script, in one run.

1. Start-up: a sandbox (cgroup made and limited, bubblewrap's namespaces and mounts, the
   unprivileged user, teardown) running `/bin/true`, and running `python -c pass`, against
   the same commands run bare; the median of --runs each. The start-up is the difference.
2. Total: the course's PyTorch network (tests/service/code/scripts/torch_mnist.py, 5 epochs
   on the MNIST subset) submitted as a code job and followed to `succeeded` over HTTP
   (PostgreSQL + Redis, a dispatcher, one worker), against the same script run bare. The job
   gets as many CPUs as the machine has (--cpus), like the bare run.

Needs root (or a delegated cgroup) and bubblewrap, as a worker running code jobs does.

    .venv/bin/python bench/code_jobs.py [--runs 50] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.service_process import start_service
from service.sandbox.box import Sandbox, SandboxSpec
from service.sandbox.cgroups import Hierarchy, Limits
from tests.support.digit_images import MNIST_8K

SCRIPT = Path(__file__).resolve().parents[1] / "tests" / "service" / "code" / "scripts" / "torch_mnist.py"
SCRIPT_ARGS = ["--epochs", "5", "--limit", "6000"]


def sandboxed(hierarchy: Hierarchy, workdir: Path, argv: list[str]) -> float:
    spec = SandboxSpec(
        name=f"bench-{uuid.uuid4().hex[:8]}",
        workdir=workdir,
        argv=argv,
        cwd="/job",
        env={},
        limits=Limits(1024 * 1024 * 1024, 64, 1),
        file_size_limit=64 * 1024 * 1024,
    )
    start = time.perf_counter()
    box = Sandbox(spec, hierarchy, lambda _stream, _line: None)
    try:
        box.start()
        returncode = box.wait()
    finally:
        box.close()
    assert returncode == 0, returncode
    return time.perf_counter() - start


def bare(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def startup(runs: int) -> list[tuple[str, float, float]]:
    hierarchy = Hierarchy()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        os.chown(workdir, 65534, 65534)
        for name, argv in (("/bin/true", ["/bin/true"]), ("python -c pass", [sys.executable, "-c", "pass"])):
            boxed = statistics.median(sandboxed(hierarchy, workdir, argv) for _ in range(runs))
            plain = statistics.median(bare(argv) for _ in range(runs))
            rows.append((name, plain, boxed))
    return rows


def bare_script(data: Path) -> float:
    with tempfile.TemporaryDirectory() as folder:
        env = {
            **os.environ,
            "JOB_DATASET": str(data),
            "JOB_CHECKPOINT_DIR": f"{folder}/c",
            "JOB_OUTPUTS_DIR": f"{folder}/o",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        }
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, str(SCRIPT), *SCRIPT_ARGS], env=env, check=True, capture_output=True, cwd=folder
        )
        return time.perf_counter() - start


def service_script(client, source: str, cpus: int) -> float:
    """Submit to finished, by the job's own `finished_at`: the client polls slowly (once a second)
    so that its requests take no CPU from the job, and its polling adds nothing to the figure."""
    start = time.time()
    created = client.post(
        "/api/v1/jobs",
        json={"code": {"source": source, "args": SCRIPT_ARGS}, "dataset": "mnist", "resources": {"cpus": cpus}},
    )
    job = client.wait_for(created.json()["id"], timeout=600, poll=1.0)
    assert job["status"] == "succeeded", job["error"]
    finished = datetime.fromisoformat(job["finished_at"].replace("Z", "+00:00")).timestamp()
    return finished - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="the job's CPUs: as many as the bare run has")
    args = parser.parse_args()

    print(f"start-up: median of {args.runs}")
    rows = startup(args.runs)
    for name, plain, boxed in rows:
        print(
            f"    {name}: bare {plain * 1000:.1f} ms, sandboxed {boxed * 1000:.1f} ms, "
            f"start-up {(boxed - plain) * 1000:.1f} ms"
        )
    overhead = max(boxed - plain for _, plain, boxed in rows)

    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        (home / "datasets").mkdir()
        (home / "datasets" / "mnist.npz").symlink_to(MNIST_8K)
        client, processes, drop = start_service(
            "postgres", home, LABTRAIN_CODE_MEMORY_MB="4096", LABTRAIN_MAX_CPUS=str(args.cpus)
        )
        try:
            source = client.post("/api/v1/sources", files={"file": (SCRIPT.name, SCRIPT.read_bytes())}).json()["id"]
            service_script(client, source, args.cpus)  # the worker's first job: its page cache warm, as bare's below
            bare_script(MNIST_8K)
            pairs = [(bare_script(MNIST_8K), service_script(client, source, args.cpus)) for _ in range(args.repeats)]
        finally:
            for process in processes:
                process.stop()
            if drop:
                drop()
    plain = statistics.median(p for p, _ in pairs)
    served = statistics.median(s for _, s in pairs)
    print(
        f"5-epoch script, median of {args.repeats}: bare {plain:.2f} s, as a code job {served:.2f} s, "
        f"ratio {served / plain:.3f}; goal: at most 1.05 x bare + start-up = {1.05 * plain + overhead:.2f} s"
    )
    print("\n| measure | bare | sandbox / service | difference or ratio |\n|---|---|---|---|")
    for name, p, b in rows:
        print(
            f"| start-up, {name} (median of {args.runs}) | {p * 1000:.1f} ms | {b * 1000:.1f} ms | "
            f"+{(b - p) * 1000:.1f} ms |"
        )
    print(
        f"| torch_mnist.py, 5 epochs (median of {args.repeats}) | {plain:.2f} s | {served:.2f} s | "
        f"{served / plain:.3f}x |"
    )


if __name__ == "__main__":
    main()
