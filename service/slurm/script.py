"""A job's submission to SLURM: its sbatch options (resources, account, QOS, time, output), the
batch script that runs `labtrain worker run-one` on the node, and the environment it gets.

The environment carries the deployment's settings (the database URL among them): it goes to
sbatch as its environment, exported to the job, never on a command line or into the script's
text, which SLURM shows more widely.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
from collections.abc import Mapping
from typing import Any

from service.core import storage
from service.core.config import Settings
from service.slurm.queues import SlurmQueue

JOB_NAME_PREFIX = "labtrain-"
# SLURM's time limits are whole minutes; the job's own watch stops it at its limit, so SLURM's
# is a backstop past it (the stop's grace and a margin), never before.
TIME_MARGIN_S = 60


def job_name(job_id: str) -> str:
    return f"{JOB_NAME_PREFIX}{job_id}"


def slurm_minutes(seconds: int) -> int:
    return max(1, math.ceil(seconds / 60))


def time_limit_s(
    job_time_limit_s: int | None, queue: SlurmQueue, settings: Settings, allocation: bool = False
) -> int | None:
    """The seconds --time gives: the job's own limit and its stop's grace (`allocation`: and the
    queue's allocation_reuse_s, the time its following jobs may take), at most the queue's
    largest, in whole minutes (None: the partition's default)."""
    wanted = None
    if job_time_limit_s:
        wanted = job_time_limit_s + math.ceil(settings.stop_grace_s) + TIME_MARGIN_S
        if allocation and queue.reuses_allocations:
            wanted += queue.allocation_reuse_s
    if queue.max.time_limit_s:
        wanted = min(wanted or queue.max.time_limit_s, queue.max.time_limit_s)
    return slurm_minutes(wanted) * 60 if wanted else None


def resources(spec: Mapping[str, Any], queue: SlurmQueue) -> tuple[int, int]:
    """CPUs and memory (MB): what the spec asks (a code job's resources), or the queue's
    defaults, at most the queue's largest."""
    asked = spec.get("resources") if isinstance(spec.get("resources"), dict) else {}
    cpus, memory_mb = asked.get("cpus") or queue.cpus, asked.get("memory_mb") or queue.memory_mb
    if queue.max.cpus:
        cpus = min(cpus, queue.max.cpus)
    if queue.max.memory_mb:
        memory_mb = min(memory_mb, queue.max.memory_mb)
    return int(cpus), int(memory_mb)


def sbatch_options(
    *,
    job_id: str,
    spec: Mapping[str, Any],
    tier: str,
    job_time_limit_s: int | None,
    gpu_memory_mb: int | None,
    course_name: str | None,
    queue: SlurmQueue,
    settings: Settings,
) -> list[str]:
    cpus, memory_mb = resources(spec, queue)
    options = [
        f"--job-name={job_name(job_id)}",
        f"--partition={queue.partition}",
        "--nodes=1",
        "--ntasks=1",
        f"--cpus-per-task={cpus}",
        f"--mem={memory_mb}M",
        # labtrain decides what runs again (from its checkpoint, within its attempts), not SLURM.
        "--no-requeue",
        f"--output={output_path(settings, job_id)}",
        "--export=ALL",  # sbatch's environment, which is the one job_environment made
    ]
    seconds = time_limit_s(job_time_limit_s, queue, settings, allocation=True)
    if seconds:
        options.append(f"--time={seconds // 60}")
    if queue.signal_grace_s:
        # To the batch shell, which is run-one itself: it yields (checkpoint, back to the queue).
        options.append(f"--signal=B:USR1@{queue.signal_grace_s}")
    if queue.has_gpu:
        options.append(f"--gres=shard:{queue.shards(gpu_memory_mb)}" if queue.gpu == "shard" else "--gres=gpu:1")
    account = queue.account_for(course_name)
    if account:
        options.append(f"--account={account}")
    if tier in queue.qos:
        options.append(f"--qos={queue.qos[tier]}")
    return options


def output_path(settings: Settings, job_id: str) -> str:
    # %j: SLURM's job id, so each submission of the job keeps its own file.
    return str(storage.job_dir(settings, job_id) / "slurm-%j.out")


def batch_script(queue: SlurmQueue, job_id: str, seconds: int | None) -> str:
    """`exec`: the runner is the batch shell itself, so SLURM's signals (B:USR1) reach it."""
    command = list(queue.command) or [sys.executable, "-m", "service"]
    argv = [*command, "worker", "run-one", job_id, "--worker-name", queue.worker_name]
    if seconds:
        argv += ["--ends-after-s", str(seconds), "--signal-grace-s", str(queue.signal_grace_s)]
    return "#!/bin/sh\n" + "exec " + " ".join(shlex.quote(word) for word in argv) + "\n"


def job_environment(settings: Settings, queue: SlurmQueue, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The deployment's LABTRAIN_* settings as this process has them, its core paths and URLs as
    its Settings say, then the queue's own (paths on the nodes)."""
    environ = os.environ if environ is None else environ
    env = {name: value for name, value in environ.items() if name.startswith("LABTRAIN_")}
    env.update(
        LABTRAIN_HOME=str(settings.home),
        LABTRAIN_DATABASE_URL=settings.database_url,
        LABTRAIN_BROKER_URL=settings.broker_url,
        LABTRAIN_DATA_DIR=str(settings.data_dir),
        LABTRAIN_ARTIFACT_DIR=str(settings.artifact_dir),
    )
    env.pop("LABTRAIN_QUEUES", None)  # the node needs no queue map
    env.update(queue.environment)
    return env
