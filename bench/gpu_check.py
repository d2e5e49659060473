"""The GPU path end to end, on a machine with an NVIDIA GPU (bench/gpu_check.sh sets up and runs this).

A deployment from bench/service_process.py (PostgreSQL + Redis where both answer and TensorFlow
is installed, else the embedded SQLite one), with a GPU worker of concurrency 8 added, then one of
concurrency 1 in its place:

  (a) a Keras `mlp` job on the GPU succeeds, and its result names a GPU device
  (b) a PyTorch `feedforward` job likewise
  (c) a code job (a small PyTorch script that reports through labtrain_job) runs on the GPU
  (d) eight small MNIST jobs, 2048 MB of the GPU each, run at the same time on the one GPU
  (f) a PyTorch job given 4 MB of the GPU, beside one given its usual share, fails alone with
      gpu_memory_exceeded while its neighbour succeeds
  (e) on the worker of concurrency 1, a debug-tier job preempts a long batch job: the batch job
      yields (a `preempted` status event), the debug job succeeds, and the batch job resumes
      from its checkpoint and succeeds with each epoch reported once

Prints PASS or FAIL per check and exits 1 on any FAIL. bench/gpu_sharing.py uses its helpers.

    .venv/bin/python bench/gpu_check.py [--mnist PATH] [--mode auto|embedded|postgres] [--mps]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis
from sqlalchemy import create_engine, text

from bench.service_process import PG_ADMIN, REDIS, start_service
from service.core.config import Settings
from service.sandbox import probe
from tests.support.digit_images import MNIST_8K
from tests.support.processes import ServiceProcess

ENDED = ("succeeded", "failed", "cancelled")
PACKED = 8
SHARE_MB = 2048

# The code job: the course's 784-512-10 network, trained on the GPU, reporting each epoch.
CODE_SCRIPT = """\
import argparse

import numpy as np
import torch
from torch import nn

import labtrain_job

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
args = parser.parse_args()

if not torch.cuda.is_available():
    raise SystemExit("no CUDA device is visible to this code job")
if hasattr(labtrain_job, "limit_gpu_memory"):
    labtrain_job.limit_gpu_memory()  # the job's share of the GPU, where it has one
device = torch.device("cuda")
print(f"cuda device: {torch.cuda.get_device_name(0)}", flush=True)

torch.manual_seed(0)
data = np.load(labtrain_job.dataset_path())
x = torch.tensor(data["x_train"], dtype=torch.float32, device=device).reshape(-1, 784) / 255.0
y = torch.tensor(data["y_train"], device=device).long()
x_test = torch.tensor(data["x_test"], dtype=torch.float32, device=device).reshape(-1, 784) / 255.0
y_test = torch.tensor(data["y_test"], device=device).long()
model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 10)).to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(1, args.epochs + 1):
    model.train()
    order = torch.randperm(len(x), device=device)
    total = torch.zeros((), device=device)
    for begin in range(0, len(x), 64):
        index = order[begin : begin + 64]
        loss = nn.functional.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.detach() * len(index)
    model.eval()
    with torch.no_grad():
        val_accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    labtrain_job.report(
        epoch=epoch, loss=total.item() / len(x), val_accuracy=val_accuracy, on_gpu=1.0, epochs=args.epochs
    )
print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB", flush=True)
"""


# --- nvidia-smi ---------------------------------------------------------------------------------


def smi_index() -> list[str]:
    """`-i` for nvidia-smi: the first device of CUDA_VISIBLE_DEVICES, as the GPU worker sees it."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return ["-i", visible] if visible else []


def smi(*args: str, timeout: float = 20) -> str:
    """nvidia-smi's output, or a line saying why there is none."""
    if shutil.which("nvidia-smi") is None:
        return "nvidia-smi is not installed"
    try:
        done = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"nvidia-smi failed: {exc}"
    return done.stdout if done.returncode == 0 else f"nvidia-smi exited {done.returncode}: {done.stderr.strip()}"


def visible_gpus() -> tuple[list[str], str]:
    """(the GPUs nvidia-smi lists, why none where it lists none)."""
    if shutil.which("nvidia-smi") is None:
        return [], "nvidia-smi is not installed (no NVIDIA driver on this machine)"
    listed = smi("-L")
    gpus = [line.strip() for line in listed.splitlines() if line.strip().startswith("GPU")]
    return gpus, "" if gpus else f"nvidia-smi lists no GPU: {listed.strip()[:300]}"


def _numbers(line: str) -> list[float] | None:
    try:
        return [float(part) for part in line.split(",")]
    except ValueError:  # [N/A], [Not Supported]
        return None


def _ancestry(pid: int, depth: int = 4) -> list[int]:
    """pid, its parent, grandparent, ... (Linux /proc), to find the job a process belongs to."""
    chain = [pid]
    for _ in range(depth):
        try:
            text = Path(f"/proc/{chain[-1]}/stat").read_text()
        except OSError:
            break
        parent = int(text[text.rindex(")") + 2 :].split()[1])
        if parent <= 1:
            break
        chain.append(parent)
    return chain


class SmiSampler(threading.Thread):
    """Samples the GPU's utilisation and memory in use, and each compute process's memory,
    every `interval` seconds until stopped."""

    def __init__(self, interval: float = 0.5):
        super().__init__(name="nvidia-smi-sampler", daemon=True)
        self.interval = interval
        self.utilization: list[float] = []
        self.memory_used: list[float] = []
        self.process_peak_mb: dict[int, float] = {}
        self.ancestry: dict[int, list[int]] = {}
        self.most_processes = 0
        self.busiest_sample = ""
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            began = time.monotonic()
            gpu = smi(*smi_index(), "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits")
            values = _numbers(gpu.splitlines()[0]) if gpu.strip() else None
            if values and len(values) == 2:
                self.utilization.append(values[0])
                self.memory_used.append(values[1])
            apps = smi("--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits")
            rows = [v for v in (_numbers(line) for line in apps.splitlines() if line.strip()) if v and len(v) == 2]
            for pid, used in rows:
                pid = int(pid)
                self.process_peak_mb[pid] = max(self.process_peak_mb.get(pid, 0.0), used)
                if pid not in self.ancestry:
                    self.ancestry[pid] = _ancestry(pid)
            if len(rows) > self.most_processes:
                self.most_processes, self.busiest_sample = len(rows), apps.strip()
            self._halt.wait(max(0.0, self.interval - (time.monotonic() - began)))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)

    def summary(self) -> dict[str, Any]:
        return {
            "utilization_mean": statistics.fmean(self.utilization) if self.utilization else None,
            "utilization_max": max(self.utilization, default=None),
            "memory_used_max_mb": max(self.memory_used, default=None),
            "samples": len(self.utilization),
            "most_processes": self.most_processes,
        }

    def memory_by_job(self, pid_jobs: dict[int, str]) -> dict[str, float]:
        """Each job's peak GPU memory (MiB): its processes' peaks, a process found by its own pid
        or an ancestor's in the worker's log."""
        found: dict[str, float] = {}
        for pid, peak in self.process_peak_mb.items():
            job = next((pid_jobs[p] for p in self.ancestry.get(pid, [pid]) if p in pid_jobs), None)
            if job is not None:
                found[job] = found.get(job, 0.0) + peak
        return found


# --- the deployment -----------------------------------------------------------------------------


def tensorflow_installed() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def servers_answer() -> tuple[bool, str]:
    """Whether the PostgreSQL and Redis of bench/service_process.py answer."""
    try:
        engine = create_engine(PG_ADMIN, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                conn.execute(text("select 1"))
        finally:
            engine.dispose()
        redis.Redis.from_url(REDIS, socket_connect_timeout=3).ping()
    except Exception as exc:
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    return True, ""


def choose_mode(requested: str) -> str:
    """`postgres` (PostgreSQL + Redis) or `embedded`. The postgres deployment's CPU worker
    imports TensorFlow at start, so without TensorFlow the embedded one is used, whose
    supervisor restarts that worker instead of failing the start."""
    if requested != "auto":
        return requested
    if not tensorflow_installed():
        print("deployment: embedded (SQLite), as TensorFlow is not installed", flush=True)
        return "embedded"
    answered, why = servers_answer()
    if answered:
        print(f"deployment: PostgreSQL ({PG_ADMIN.rsplit('@', 1)[-1]}) + Redis ({REDIS})", flush=True)
        return "postgres"
    print(f"deployment: embedded (SQLite), as PostgreSQL + Redis do not answer ({why})", flush=True)
    return "embedded"


def code_sandbox_setting(requested: str, home: Path) -> str | None:
    """LABTRAIN_CODE_SANDBOX for the deployment: `off` where this machine cannot make a sandbox
    (no bubblewrap, no cgroups) and `auto` was asked, so the code job still runs on the GPU."""
    if requested == "off":
        return "off"
    if requested == "required":
        return None
    found = probe.capabilities(Settings.from_env_map({"LABTRAIN_HOME": str(home)}))
    if "sandbox_error" in found:
        print(
            f"note: no sandbox can be made here ({found['sandbox_error']}); code jobs run unsandboxed "
            "(LABTRAIN_CODE_SANDBOX=off)",
            flush=True,
        )
        return "off"
    print(f"sandbox: {found.get('sandbox')}", flush=True)
    return None


class GpuLab:
    """A deployment from bench/service_process.py, and the GPU workers added to it."""

    def __init__(self, home: Path, mnist: Path, mode: str, **extra_env: str):
        self.home = home
        data_dir = home / "datasets"
        data_dir.mkdir(exist_ok=True)
        (data_dir / "mnist.npz").symlink_to(mnist.resolve())
        self.client, self.processes, self._cleanup = start_service(
            mode, home, LABTRAIN_DATA_DIR=str(data_dir), **extra_env
        )
        self.env = dict(self.processes[0].env)  # the deployment's database, broker and settings
        self.workers: dict[str, ServiceProcess] = {}

    def log_path(self, name: str) -> Path:
        return self.home / f"worker-{name}.log"

    def start_worker(self, name: str, concurrency: int, timeout: float = 180, **extra_env: str) -> None:
        """A GPU worker (JSON log lines, which carry each job's process id), once it is online."""
        env = {**self.env, "LABTRAIN_LOG_FORMAT": "json", **extra_env}
        args = ["worker", "--queues", "gpu", "--concurrency", str(concurrency), "--name", name]
        self.workers[name] = ServiceProcess(args, env, self.log_path(name))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.workers[name].proc.poll() is not None:
                raise RuntimeError(f"GPU worker {name} exited:\n{self.tail(name)}")
            if name in self.gpu_workers():
                return
            time.sleep(0.5)
        raise TimeoutError(f"GPU worker {name} did not come online in {timeout:.0f} s:\n{self.tail(name)}")

    def stop_worker(self, name: str, timeout: float = 30) -> None:
        self.workers.pop(name).stop()
        deadline = time.monotonic() + timeout
        while name in self.gpu_workers() and time.monotonic() < deadline:
            time.sleep(0.5)

    def gpu_workers(self) -> dict[str, dict]:
        """The GPU queue's workers online, by name, as GET /api/v1/queue shows them."""
        answer = self.client.get("/api/v1/queue")
        if answer.status_code != 200:
            return {}
        return {w["name"]: w for w in answer.json()["queues"]["gpu"]["workers"]}

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.log_path(name)
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def pid_jobs(self, name: str) -> dict[int, str]:
        """Process id -> job id, from the worker's JSON log lines (each job line names both)."""
        found: dict[int, str] = {}
        path = self.log_path(name)
        for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("job_id") and record.get("process"):
                found.setdefault(int(record["process"]), record["job_id"])
        return found

    def close(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        for process in self.processes:
            process.stop()
        if self._cleanup:
            self._cleanup()


def gpu_memory_of(worker: dict) -> tuple[str | None, int | None]:
    """(GPU name, memory MB) of a worker as GET /api/v1/queue shows it (flat or under `gpu`)."""
    nested = worker.get("gpu") or {}
    return worker.get("gpu_name") or nested.get("name"), worker.get("gpu_memory_mb") or nested.get("memory_mb")


# --- jobs ---------------------------------------------------------------------------------------


class Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self, most: float | None = None) -> float:
        remaining = max(0.0, self.end - time.monotonic())
        return remaining if most is None else min(most, remaining)


def network_body(
    framework: str,
    epochs: int,
    name: str,
    gpu_memory_mb: int | None = SHARE_MB,
    tier: str | None = None,
    seed: int = 0,
    batch_size: int = 32,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "dataset": "mnist",
        "framework": framework,
        "network": {"preset": "mlp" if framework == "tensorflow" else "feedforward"},
        "training": {"epochs": epochs, "batch_size": batch_size, "seed": seed},
        "device": "gpu",
    }
    if gpu_memory_mb is not None:
        body["resources"] = {"gpu_memory_mb": gpu_memory_mb}
    if tier is not None:
        body["tier"] = tier
    return body


def submit(client, body: dict[str, Any]) -> str:
    answer = client.post("/api/v1/jobs", json=body)
    if answer.status_code != 201:
        raise RuntimeError(f"submit of {body.get('name')} answered {answer.status_code}: {answer.text[:500]}")
    return answer.json()["id"]


def job(client, job_id: str) -> dict[str, Any]:
    return client.get(f"/api/v1/jobs/{job_id}").json()


def wait_end(client, job_id: str, timeout: float, poll: float = 0.5) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = job(client, job_id)
        if found["status"] in ENDED:
            return found
        if time.monotonic() >= deadline:
            raise TimeoutError(f"job {job_id} ({found.get('name')}) still {found['status']} after {timeout:.0f} s")
        time.sleep(poll)


def events(client, job_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = client.get(f"/api/v1/jobs/{job_id}/events", params={"after": found[-1]["seq"] if found else 0}).json()
        found += page["items"]
        if len(page["items"]) < 1000:
            return found


def epochs_of(client, job_id: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events(client, job_id) if e["type"] == "epoch"]


def at(stamp: str | None) -> float | None:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else None


def run_seconds(found: dict[str, Any]) -> float | None:
    start, end = at(found.get("started_at")), at(found.get("finished_at"))
    return end - start if start is not None and end is not None else None


def why_not(client, found: dict[str, Any]) -> str:
    """A failed or unfinished job, in a few lines: its status, error and last log messages."""
    logs = [e["data"].get("message", "") for e in events(client, found["id"]) if e["type"] == "log"][-3:]
    text = f"status {found['status']}, error {found.get('error')}"
    if logs:
        text += "; last log events: " + " | ".join(m[:300] for m in logs)
    log = client.get(f"/api/v1/jobs/{found['id']}/log")
    if log.status_code == 200 and log.text.strip():
        text += "\n      job log: " + log.text.strip()[-800:].replace("\n", "\n      ")
    return text


def median_epoch_time(client, job_id: str) -> float | None:
    times = [e["epoch_time"] for e in epochs_of(client, job_id) if e.get("epoch_time")]
    return statistics.median(times) if times else None


def epochs_for(seconds: float, epoch_time: float | None, least: int, default: int) -> int:
    """Epochs that train for about `seconds` at `epoch_time` a epoch (the service caps at 1000)."""
    if not epoch_time:
        return default
    return max(least, min(1000, round(seconds / epoch_time)))


# --- the checks ---------------------------------------------------------------------------------


class Checks:
    def __init__(self) -> None:
        self.failed = 0

    def report(self, ok: bool, label: str, detail: str) -> None:
        print(f"{'PASS' if ok else 'FAIL'} {label}: {detail}", flush=True)
        self.failed += not ok


def check_single_jobs(lab: GpuLab, checks: Checks, deadline: Deadline, keras: bool) -> dict[str, float | None]:
    """(a), (b) and (c) at once on the worker of concurrency 8; the epoch times they measured."""
    client = lab.client
    source = client.post("/api/v1/sources", files={"file": ("gpu_torch.py", CODE_SCRIPT.encode())})
    if source.status_code != 201:
        raise RuntimeError(f"upload of the code job's script answered {source.status_code}: {source.text[:300]}")
    ids: dict[str, str] = {}
    if keras:
        ids["a"] = submit(client, network_body("tensorflow", 5, "gpu-check-keras-mlp"))
    else:
        checks.report(
            False, "(a) Keras mlp on the GPU", "TensorFlow is not installed here (bench/gpu_check.sh installs it)"
        )
    ids["b"] = submit(client, network_body("pytorch", 5, "gpu-check-pytorch-feedforward"))
    ids["c"] = submit(
        client,
        {
            "name": "gpu-check-code",
            "code": {"source": source.json()["id"], "args": ["--epochs", "3"]},
            "dataset": "mnist",
            "device": "gpu",
            "resources": {"memory_mb": 6144, "gpu_memory_mb": SHARE_MB},
        },
    )
    labels = {
        "a": "(a) Keras mlp on the GPU",
        "b": "(b) PyTorch feedforward on the GPU",
        "c": "(c) code job on the GPU",
    }
    epoch_times: dict[str, float | None] = {"tensorflow": None, "pytorch": None}
    for key, job_id in ids.items():
        try:
            found = wait_end(client, job_id, deadline.left(420))
        except TimeoutError as exc:
            checks.report(False, labels[key], f"{exc}; {why_not(client, job(client, job_id))}")
            continue
        if found["status"] != "succeeded":
            checks.report(False, labels[key], why_not(client, found))
            continue
        took = run_seconds(found) or 0.0
        if key in "ab":
            device = (found.get("result") or {}).get("device")
            framework = "tensorflow" if key == "a" else "pytorch"
            epoch_times[framework] = median_epoch_time(client, job_id)
            checks.report(
                bool(device) and str(device).lower() != "cpu",
                labels[key],
                f"result.device {device!r}, test accuracy {(found.get('metrics') or {}).get('accuracy')}, ran {took:.1f} s, "
                f"median epoch {epoch_times[framework] or 0:.3f} s, gpu_memory_mb {found.get('gpu_memory_mb')}",
            )
        else:
            log = client.get(f"/api/v1/jobs/{job_id}/log").text
            named = next((line for line in log.splitlines() if "cuda device:" in line), "")
            metrics = found.get("metrics") or {}
            checks.report(
                metrics.get("on_gpu") == 1.0 and bool(named),
                labels[key],
                f"{named.strip() or 'no `cuda device:` line in its log'}, val_accuracy "
                f"{metrics.get('val_accuracy')}, ran {took:.1f} s, gpu_memory_mb {found.get('gpu_memory_mb')}",
            )
    return epoch_times


def check_packing(
    lab: GpuLab, worker: str, checks: Checks, deadline: Deadline, keras: bool, epoch_times: dict[str, float | None]
) -> None:
    """(d): eight jobs asking SHARE_MB each are running at once on the worker of concurrency 8."""
    client, label = lab.client, f"(d) {PACKED} MNIST jobs packed on one GPU"
    frameworks = ["tensorflow" if keras and i % 2 == 0 else "pytorch" for i in range(PACKED)]
    # Long enough that all eight have started before the first ends (each starts a process).
    epochs = {f: epochs_for(15.0, epoch_times.get(f), 5, 20) for f in set(frameworks)}
    sampler = SmiSampler()
    sampler.start()
    try:
        ids = [
            submit(client, network_body(f, epochs[f], f"gpu-check-packed-{i}", seed=i))
            for i, f in enumerate(frameworks)
        ]
        most, snapshot, found = 0, "", {}
        while True:
            found = {job_id: job(client, job_id) for job_id in ids}
            running = sum(1 for j in found.values() if j["status"] == "running")
            if running > most:
                most = running
                if most == PACKED:
                    gpu = lab.gpu_workers().get(worker, {})
                    snapshot = json.dumps({k: v for k, v in gpu.items() if "gpu" in k})
            if all(j["status"] in ENDED for j in found.values()) or deadline.left() <= 0:
                break
            time.sleep(0.5)
    finally:
        sampler.stop()
    memory = sampler.memory_by_job(lab.pid_jobs(worker))
    unfinished = [j for j in found.values() if j["status"] != "succeeded"]
    shares = sorted({j.get("gpu_memory_mb") for j in found.values()}, key=str)
    per_job = ", ".join(f"{memory[i]:.0f}" for i in ids if i in memory) or "n/a (nvidia-smi lists no processes here)"
    checks.report(
        most == PACKED and not unfinished and shares == [SHARE_MB],
        label,
        f"at most {most} of {PACKED} running at once ({epochs} epochs), "
        f"{len(found) - len(unfinished)} succeeded, gpu_memory_mb {shares}; nvidia-smi: up to "
        f"{sampler.most_processes} processes on the GPU, per-job peak MiB [{per_job}], utilisation mean "
        f"{sampler.summary()['utilization_mean'] or 0:.0f} %",
    )
    if snapshot:
        print(f"      the worker while all {PACKED} ran: {snapshot}", flush=True)
    if sampler.busiest_sample:
        print("      nvidia-smi --query-compute-apps=pid,used_memory (busiest sample):", flush=True)
        for line in sampler.busiest_sample.splitlines():
            print(f"        {line}", flush=True)
    for bad in unfinished:
        print(f"      {bad['name']}: {why_not(client, bad)}", flush=True)


def check_over_share(lab: GpuLab, checks: Checks, deadline: Deadline) -> None:
    """(f): a job past its share fails alone; its neighbour on the card succeeds."""
    client, label = lab.client, "(f) a job past its GPU share fails alone"
    greedy = submit(client, network_body("pytorch", 3, "gpu-check-over-share", gpu_memory_mb=4))
    neighbour = submit(client, network_body("pytorch", 3, "gpu-check-neighbour"))
    ended = {job_id: wait_end(client, job_id, deadline.left(300)) for job_id in (greedy, neighbour)}
    error = ended[greedy].get("error") or {}
    checks.report(
        ended[greedy]["status"] == "failed"
        and error.get("code") == "gpu_memory_exceeded"
        and ended[neighbour]["status"] == "succeeded",
        label,
        f"4 MB job: {ended[greedy]['status']} {error.get('code')}; neighbour: {ended[neighbour]['status']}",
    )


def check_preemption(lab: GpuLab, checks: Checks, deadline: Deadline, torch_epoch: float | None) -> None:
    """(e): on a worker of one slot, a debug job makes a long batch job yield, and it resumes."""
    client, label = lab.client, "(e) preemption"
    epochs = epochs_for(45.0, torch_epoch, 50, 300)
    batch_id = submit(client, network_body("pytorch", epochs, "gpu-check-batch", tier="batch"))
    wait_until = time.monotonic() + deadline.left(240)
    found = job(client, batch_id)
    while time.monotonic() < wait_until:
        found = job(client, batch_id)
        if found["status"] in ENDED or (found["status"] == "running" and epochs_of(client, batch_id)):
            break
        time.sleep(0.5)
    if found["status"] != "running":
        checks.report(False, label, f"the batch job never ran an epoch: {why_not(client, found)}")
        return
    debug_id = submit(client, network_body("pytorch", 2, "gpu-check-debug", tier="debug"))
    debug = wait_end(client, debug_id, deadline.left(300))
    batch = wait_end(client, batch_id, deadline.left(400))
    batch_events = events(client, batch_id)
    preempted = [e["data"] for e in batch_events if e["type"] == "status" and e["data"].get("reason") == "preempted"]
    by = {p.get("by") for p in preempted if p.get("by")} | {
        e["data"]["preempted_by"] for e in batch_events if e["type"] == "log" and e["data"].get("preempted_by")
    }
    checks.report(
        bool(preempted) and (not by or by == {debug_id}),
        f"{label}: the batch job yielded",
        f"{len(preempted)} `preempted` status event(s), by {sorted(by) or 'unnamed'} (the debug job is {debug_id}); "
        f"{epochs} epochs asked",
    )
    debug_wait = (at(debug.get("started_at")) or 0) - (at(debug.get("created_at")) or 0)
    checks.report(
        debug["status"] == "succeeded" and debug.get("tier") == "debug",
        f"{label}: the debug job succeeded",
        f"status {debug['status']}, tier {debug.get('tier')}, waited {debug_wait:.1f} s for the slot, "
        f"ran {run_seconds(debug) or 0:.1f} s"
        + ("" if debug["status"] == "succeeded" else f"; {why_not(client, debug)}"),
    )
    started_first = (at(debug.get("started_at")) or float("inf")) < (at(batch.get("finished_at")) or 0)
    reported = [e["data"]["epoch"] for e in batch_events if e["type"] == "epoch"]
    resumed = [
        e["data"]["message"]
        for e in batch_events
        if e["type"] == "log" and "resuming from the checkpoint of epoch" in e["data"].get("message", "")
    ]
    checks.report(
        batch["status"] == "succeeded"
        and reported == list(range(1, epochs + 1))
        and bool(resumed)
        and started_first
        and (batch.get("preemptions") or 0) >= 1
        and batch.get("attempt") == 1,
        f"{label}: the batch job resumed and succeeded",
        f"status {batch['status']}, {len(reported)} epoch events for {epochs} epochs "
        f"({'each once, in order' if reported == list(range(1, epochs + 1)) else 'NOT each once: ' + str(reported[:20])}), "
        f"{resumed[0] if resumed else 'no resume log event'}, preemptions {batch.get('preemptions')}, "
        f"attempt {batch.get('attempt')}, the debug job started {'before' if started_first else 'AFTER'} it ended"
        + ("" if batch["status"] == "succeeded" else f"; {why_not(client, batch)}"),
    )


def run_checks(lab: GpuLab, checks: Checks, deadline: Deadline, keras: bool, worker_env: dict[str, str]) -> None:
    try:
        lab.start_worker("gpu-check-8", PACKED, **worker_env)
        name, memory = gpu_memory_of(lab.gpu_workers()["gpu-check-8"])
        checks.report(bool(memory), "GPU worker online", f"concurrency {PACKED}, advertises {name!r} with {memory} MB")
    except Exception as exc:
        checks.report(False, "GPU worker online", f"{type(exc).__name__}: {exc}")
        return
    epoch_times: dict[str, float | None] = {}
    for step in ("a-c", "d", "f", "e"):
        if deadline.left() <= 0:
            checks.report(False, f"({step})", "not run: the check's time budget ran out")
            continue
        try:
            if step == "a-c":
                epoch_times = check_single_jobs(lab, checks, deadline, keras)
            elif step == "d":
                check_packing(lab, "gpu-check-8", checks, deadline, keras, epoch_times)
            elif step == "f":
                check_over_share(lab, checks, deadline)
            else:
                lab.stop_worker("gpu-check-8")
                lab.start_worker("gpu-check-1", 1, **worker_env)
                check_preemption(lab, checks, deadline, epoch_times.get("pytorch"))
        except Exception as exc:
            checks.report(False, f"({step})", f"{type(exc).__name__}: {exc}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", type=Path, default=MNIST_8K)
    parser.add_argument("--mode", choices=("auto", "embedded", "postgres"), default="auto")
    parser.add_argument("--code-sandbox", choices=("auto", "required", "off"), default="auto")
    parser.add_argument("--mps", action="store_true", help="GPU workers start NVIDIA MPS (LABTRAIN_GPU_MPS=1)")
    parser.add_argument("--budget-s", type=float, default=420, help="the checks' time, deployment start included")
    args = parser.parse_args()

    gpus, why = visible_gpus()
    if not gpus:
        print(f"FAIL gpu: {why}", flush=True)
        sys.exit(1)
    if not args.mnist.exists():
        print(f"FAIL data: the MNIST subset is not at {args.mnist} (pass --mnist PATH)", flush=True)
        sys.exit(1)
    print("GPUs: " + "; ".join(gpus), flush=True)
    keras = tensorflow_installed()
    deadline, checks = Deadline(args.budget_s), Checks()
    worker_env = {"LABTRAIN_GPU_MPS": "1"} if args.mps else {}
    with tempfile.TemporaryDirectory(prefix="labtrain-gpu-check-") as folder:
        home = Path(folder)
        extra = {
            "LABTRAIN_MAX_RUNNING_GPU": "32",
            "LABTRAIN_MAX_QUEUED": "64",
            "LABTRAIN_PREEMPT_AFTER_S": "3",
        }
        if code_sandbox_setting(args.code_sandbox, home) == "off":
            extra["LABTRAIN_CODE_SANDBOX"] = "off"
        try:
            lab = GpuLab(home, args.mnist, choose_mode(args.mode), **extra)
        except Exception as exc:
            print(f"FAIL deployment: {type(exc).__name__}: {exc}", flush=True)
            for log in sorted(home.glob("*.log")):
                print(
                    f"--- the last lines of {log.name}:\n"
                    + "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                )
            sys.exit(1)
        try:
            run_checks(lab, checks, deadline, keras, worker_env)
        finally:
            if checks.failed:
                for name in list(lab.workers):
                    print(f"--- the last lines of worker {name}'s log:\n{lab.tail(name)}", flush=True)
            lab.close()
    print(f"{'FAILED' if checks.failed else 'PASSED'}: {checks.failed} check(s) failed", flush=True)
    sys.exit(1 if checks.failed else 0)


if __name__ == "__main__":
    main()
