"""Eight MNIST jobs one at a time against packed on one GPU, in one run.

Four Keras `mlp` and four PyTorch `feedforward` jobs (5 epochs at batch 32 on the MNIST subset,
job i with seed i), each asking for --gpu-memory-mb of the GPU: first on a GPU worker of
concurrency 1 (one at a time), then, with the same bodies, on one of concurrency 8 (all eight
packed on the card). Each phase submits the eight jobs at once and is timed from the first
submit to the last finish (the jobs' own timestamps); nvidia-smi is sampled every 0.5 s for the
GPU's utilisation and each process's memory, which the worker's log ties to its job. A warm-up
job of each framework runs first, untimed. The deployment is bench/service_process.py's
(PostgreSQL + Redis where both answer, else the embedded one).

    .venv/bin/python bench/gpu_sharing.py [--mnist service/data/files/mnist-8k.npz] [--gpu-memory-mb 2048]
        [--epochs 5] [--json out.json]

Goals (issue 15): packed at least 5x the throughput of one at a time, and each job's test
accuracy equal to its solo run's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gpu_check import (
    ENDED,
    GpuLab,
    SmiSampler,
    at,
    choose_mode,
    gpu_memory_of,
    job,
    network_body,
    run_seconds,
    smi,
    submit,
    tensorflow_installed,
    visible_gpus,
    wait_end,
)
from tests.support.digit_images import MNIST_8K

JOBS = 8


def bodies(epochs: int, share_mb: int, keras: bool) -> list[dict[str, Any]]:
    frameworks = ["tensorflow"] * (JOBS // 2) + ["pytorch"] * (JOBS // 2) if keras else ["pytorch"] * JOBS
    made, count = [], {"tensorflow": 0, "pytorch": 0}
    for framework in frameworks:
        count[framework] += 1
        name = f"{'keras-mlp' if framework == 'tensorflow' else 'pytorch-feedforward'}-{count[framework]}"
        made.append(network_body(framework, epochs, name, gpu_memory_mb=share_mb, seed=count[framework] - 1))
    return made


def warm_up(lab: GpuLab, keras: bool) -> None:
    """One short job of each framework: libraries and data read once from disk before timing."""
    for framework in ("tensorflow", "pytorch") if keras else ("pytorch",):
        done = wait_end(lab.client, submit(lab.client, network_body(framework, 1, f"warm-up-{framework}")), 600)
        if done["status"] != "succeeded":
            sys.exit(f"the warm-up {framework} job {done['status']}: {done.get('error')}")


def phase(lab: GpuLab, worker: str, specs: list[dict[str, Any]]) -> dict[str, Any]:
    """Submit every job at once, wait for all, sampling nvidia-smi the while."""
    sampler = SmiSampler()
    sampler.start()
    try:
        ids = [submit(lab.client, body) for body in specs]
        most_running = 0
        while True:
            found = [job(lab.client, job_id) for job_id in ids]
            most_running = max(most_running, sum(1 for j in found if j["status"] == "running"))
            if all(j["status"] in ENDED for j in found):
                break
            time.sleep(0.5)
    finally:
        sampler.stop()
    failed = [j for j in found if j["status"] != "succeeded"]
    if failed:
        sys.exit("jobs did not succeed: " + "; ".join(f"{j['name']}: {j['status']} {j.get('error')}" for j in failed))
    created = min(at(j["created_at"]) for j in found)
    finished = max(at(j["finished_at"]) for j in found)
    memory = sampler.memory_by_job(lab.pid_jobs(worker))
    return {
        "seconds": finished - created,
        "most_running": most_running,
        "gpu": sampler.summary(),
        "jobs": [
            {
                "name": j["name"],
                "id": j["id"],
                "accuracy": (j.get("metrics") or {}).get("accuracy"),
                "run_seconds": run_seconds(j),
                "device": (j.get("result") or {}).get("device"),
                "gpu_memory_mb": j.get("gpu_memory_mb"),
                "gpu_memory_used_mb": memory.get(j["id"]),
            }
            for j in found
        ],
    }


def number(value: float | None, form: str = ".0f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{form}}{unit}"


def table(solo: dict[str, Any], packed: dict[str, Any], card: str, share_mb: int) -> str:
    ratio = solo["seconds"] / packed["seconds"]
    lines = [
        f"GPU: {card}; each job asks for {share_mb} MB of it",
        "",
        "| measure | one at a time (concurrency 1) | packed (concurrency 8) | packed against one at a time |",
        "|---|---|---|---|",
        f"| {JOBS} jobs, first submit to last finish | {solo['seconds']:.1f} s | {packed['seconds']:.1f} s | "
        f"{ratio:.2f}x the throughput (goal: at least 5x) |",
        f"| jobs running at once, at most | {solo['most_running']} | {packed['most_running']} | |",
    ]
    for key, title, unit in (
        ("utilization_mean", "GPU utilisation, mean of 0.5 s samples", " %"),
        ("utilization_max", "GPU utilisation, highest sample", " %"),
        ("memory_used_max_mb", "GPU memory in use, highest sample", " MiB"),
        ("most_processes", "processes on the GPU at once, at most (nvidia-smi)", ""),
    ):
        lines.append(
            f"| {title} | {number(solo['gpu'][key], '.0f', unit)} | {number(packed['gpu'][key], '.0f', unit)} | |"
        )
    lines += [
        "",
        "| job | test accuracy, one at a time | packed | equal | GPU memory while packed (peak, nvidia-smi) "
        "| run time one at a time / packed |",
        "|---|---|---|---|---|---|",
    ]
    equal = 0
    for alone, shared in zip(solo["jobs"], packed["jobs"], strict=True):
        same = alone["accuracy"] == shared["accuracy"]
        equal += same
        lines.append(
            f"| {alone['name']} | {number(alone['accuracy'], '.4f')} | {number(shared['accuracy'], '.4f')} | "
            f"{'yes' if same else 'no'} | {number(shared['gpu_memory_used_mb'], '.0f', ' MiB')} | "
            f"{number(alone['run_seconds'], '.1f', ' s')} / {number(shared['run_seconds'], '.1f', ' s')} |"
        )
    lines += [
        "",
        f"Throughput: {ratio:.2f}x ({'met' if ratio >= 5 else 'not met'}: goal at least 5x). "
        f"Accuracy: {equal} of {JOBS} jobs equal to their solo run ({'met' if equal == JOBS else 'not met'}).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", type=Path, default=MNIST_8K)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--gpu-memory-mb", type=int, default=2048, help="what each job asks for (8 must fit)")
    parser.add_argument("--mode", choices=("auto", "embedded", "postgres"), default="auto")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = parser.parse_args()

    gpus, why = visible_gpus()
    if not gpus:
        sys.exit(f"no GPU is visible, so there is nothing to share: {why}. Run this on a machine with an NVIDIA GPU.")
    if not args.mnist.exists():
        sys.exit(f"the MNIST subset is not at {args.mnist}: pass --mnist PATH")
    keras = tensorflow_installed()
    if not keras:
        print("NOTE: TensorFlow is not installed, so all eight jobs are PyTorch feedforward ones", flush=True)
    print("GPUs: " + "; ".join(gpus), flush=True)
    print(smi(), flush=True)
    specs = bodies(args.epochs, args.gpu_memory_mb, keras)

    with tempfile.TemporaryDirectory(prefix="labtrain-gpu-sharing-") as folder:
        lab = GpuLab(Path(folder), args.mnist, choose_mode(args.mode), LABTRAIN_MAX_RUNNING_GPU="32")
        try:
            lab.start_worker("gpu-solo", 1)
            card, memory = gpu_memory_of(lab.gpu_workers()["gpu-solo"])
            if memory is not None and memory < JOBS * args.gpu_memory_mb:
                sys.exit(
                    f"{JOBS} jobs of {args.gpu_memory_mb} MB do not fit the {memory} MB GPU: lower --gpu-memory-mb"
                )
            warm_up(lab, keras)
            print(f"one at a time: {JOBS} jobs on a worker of concurrency 1 ...", flush=True)
            solo = phase(lab, "gpu-solo", specs)
            print(f"    {solo['seconds']:.1f} s", flush=True)
            lab.stop_worker("gpu-solo")
            lab.start_worker("gpu-packed", JOBS)
            print(f"packed: {JOBS} jobs on a worker of concurrency {JOBS} ...", flush=True)
            packed = phase(lab, "gpu-packed", specs)
            print(f"    {packed['seconds']:.1f} s", flush=True)
        finally:
            lab.close()

    card = f"{card}, {memory} MB" if card else gpus[0]
    print("\n" + table(solo, packed, card, args.gpu_memory_mb))
    if args.json:
        figures = {"gpu": card, "gpu_memory_mb": args.gpu_memory_mb, "epochs": args.epochs, "solo": solo}
        args.json.write_text(json.dumps({**figures, "packed": packed}, indent=2))


if __name__ == "__main__":
    main()
