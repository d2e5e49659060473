"""The worker's Celery app: the `labtrain.run_job` task and per-process set-up.

Each pool process opens its own database engine after the fork (a connection must
never be shared across processes). A CPU worker's parent imports scikit-learn,
TensorFlow and PyTorch before forking so every job starts warm; a GPU worker's parent
imports neither framework (CUDA cannot be re-initialised in a forked child) and runs
each job in a fresh child, so the GPU memory TensorFlow holds is freed when it ends.
"""

from __future__ import annotations

import importlib
import logging
import socket

from celery import Celery
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    worker_process_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)

from service.core import logs
from service.core import queues as queue_catalog
from service.core.broker import RUN_JOB_TASK, make_celery, worker_queue
from service.core.config import Settings
from service.core.db import Database
from service.dispatcher import refillable
from service.jobs import families
from service.sandbox import probe
from workers import mps
from workers.heartbeat import Heartbeat
from workers.refill import Refill
from workers.runner import JobRunner

log = logging.getLogger("labtrain.worker")

_state: dict[str, object] = {}


def create_worker_app(settings: Settings, worker_name: str, queues: list[str] | None = None) -> Celery:
    """`queues`: those whose slots a pool process refills itself when its job ends (workers/refill.py);
    None or empty: none, every job comes from the broker (a GPU worker: a fresh process each)."""
    if not settings.embedded_broker:
        survive_redis_loss_while_closing()
    app = make_celery(settings)

    @app.task(name=RUN_JOB_TASK, ignore_result=True)
    def run_job(job_id: str) -> str | None:
        runner = _runner(settings, worker_name, bool(queues))
        status = runner.run(job_id)
        if queues:
            _refill(settings, runner, queues).run_following(runner)
        return status

    return app


def survive_redis_loss_while_closing() -> None:
    """When Redis goes away, Celery's consumer first collects the broker connection (which
    forgets the broker's address) and then closes it. A channel whose close was cut short
    in the first pass (a BRPOP still in flight while another socket reported the loss) puts
    its unacked messages back in the second pass, builds a Redis pool from the forgotten
    address and fails with AttributeError, which Celery treats as unrecoverable: the worker
    exits (kombu 5.7.0). Raise a connection error there instead, as the first pass does with
    Redis down; Celery then reconnects, and the message waits in Redis's unacked set as it
    would have anyway."""
    from kombu.transport import redis as kombu_redis

    connparams = kombu_redis.Channel._connparams
    if getattr(connparams, "closed_connection_guard", False):
        return

    def guarded(channel, asynchronous=False):
        if channel.connection is None or channel.connection.client is None:
            raise kombu_redis.redis.exceptions.ConnectionError("the broker connection is already closed")
        return connparams(channel, asynchronous=asynchronous)

    guarded.closed_connection_guard = True
    kombu_redis.Channel._connparams = guarded


def _runner(settings: Settings, worker_name: str, refills: bool) -> JobRunner:
    if "runner" not in _state:
        _state["runner"] = JobRunner(settings, Database(settings.database_url), worker_name, refills)
    return _state["runner"]  # type: ignore[return-value]


def _refill(settings: Settings, runner: JobRunner, queues: list[str]) -> Refill:
    if "refill" not in _state:
        _state["refill"] = Refill(settings, runner.worker_name, queues)
    return _state["refill"]  # type: ignore[return-value]


@after_setup_logger.connect
@after_setup_task_logger.connect
def _log_format(logger=None, **_kwargs) -> None:
    # Celery makes its own handlers; give them our format and the job id on job lines.
    logs.use_format(logger.handlers, Settings.from_env().log_format)


@worker_process_init.connect
def _fresh_process_state(**_kwargs) -> None:
    # A forked child must not reuse the parent's engine or connections.
    _state.pop("refill", None)
    runner = _state.pop("runner", None)
    if isinstance(runner, JobRunner):
        runner.db.engine.dispose(close=False)


@worker_ready.connect
def _start_heartbeat(**_kwargs) -> None:
    heartbeat = _state.get("heartbeat")
    if isinstance(heartbeat, Heartbeat):
        heartbeat.start()


@worker_shutting_down.connect
@worker_shutdown.connect
def _stop_heartbeat(**_kwargs) -> None:
    # At the stop's request, before the jobs running end: a worker out of the registry gets no
    # new job (a dispatcher's round counts its slots no more, its processes refill none).
    heartbeat = _state.pop("heartbeat", None)
    if isinstance(heartbeat, Heartbeat):
        heartbeat.stop()


def preload(gpu: bool) -> None:
    """Import every family's trainer before the pool forks, so no job pays for it. On a CPU
    worker a trainer's `preload()` also loads its frameworks (TensorFlow, PyTorch); a GPU
    worker must not, since CUDA cannot be re-initialised in a forked child."""
    for family in families.all_families():
        if family.trainer:
            trainer = importlib.import_module(family.trainer)
            if not gpu and hasattr(trainer, "preload"):
                trainer.preload()


def default_worker_name(queues: list[str]) -> str:
    return f"{'+'.join(queues)}@{socket.gethostname()}"


def run_worker(
    settings: Settings, queues: list[str], concurrency: int, name: str | None = None, loglevel: str = "INFO"
) -> None:
    worker_name = name or default_worker_name(queues)
    gpu = any(queue_catalog.device_of(settings, queue) == "gpu" for queue in queues)  # gpu, or a named GPU queue
    preload(gpu)
    if gpu and settings.gpu_mps:
        mps.start_daemon()
    sandbox = probe.capabilities(settings)
    if "sandbox_error" in sandbox:
        log.warning("code jobs cannot run on this worker: %s", sandbox["sandbox_error"])
    elif settings.code_sandbox != "required":
        log.warning("LABTRAIN_CODE_SANDBOX=off: code jobs run UNSANDBOXED here, as plain processes of the worker")
    _state["heartbeat"] = Heartbeat(settings, worker_name, queues, concurrency, sandbox)
    app = create_worker_app(settings, worker_name, [] if gpu else refillable(settings, queues))
    # A GPU worker also reads its own queue: the dispatcher sends it the jobs it packed onto its GPU.
    consumed = [*queues, worker_queue(worker_name)] if gpu else queues
    argv = [
        "worker",
        "--queues",
        ",".join(consumed),
        "--concurrency",
        str(concurrency),
        "--hostname",
        worker_name,
        "--loglevel",
        loglevel,
        "--pool",
        "prefork",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    if gpu:
        argv.append("--max-tasks-per-child=1")
    app.worker_main(argv)
