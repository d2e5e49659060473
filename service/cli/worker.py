"""`labtrain worker`: a Celery worker that trains jobs; `labtrain worker run-one`: one job (SLURM)."""

from __future__ import annotations

import os

import click

from service.cli.run_one import run_one
from service.core import queues as queue_catalog
from service.core.config import Settings
from service.data.fetch import install_subset


@click.group(invoke_without_command=True)
@click.option(
    "--queues", default="cpu", show_default=True, help="comma-separated: cpu, gpu, or named ones LABTRAIN_QUEUES adds"
)
@click.option("--concurrency", default=None, type=int, help="jobs at once (default: CPU cores, 1 on gpu)")
@click.option("--name", default=None, help="worker name (default: queues@host)")
@click.pass_context
def worker(ctx: click.Context, queues: str, concurrency: int | None, name: str | None) -> None:
    """Run a Celery worker that trains jobs from the given queues (`run-one`: one job, on a SLURM node)."""
    if ctx.invoked_subcommand is not None:
        return
    # Celery here, not above: `run-one`, a process per SLURM job, needs none of it.
    from service.core.broker import celery_queues
    from workers.celery_app import run_worker

    queue_list = [q.strip() for q in queues.split(",") if q.strip()]
    settings = Settings.from_env()
    try:
        known = celery_queues(settings)
    except ValueError as exc:  # LABTRAIN_QUEUES itself is wrong
        raise click.UsageError(str(exc)) from None
    unknown = [q for q in queue_list if q not in known]
    if unknown or not queue_list:
        raise click.BadParameter(
            f"no Celery queue {', '.join(unknown) or '(none given)'}; Celery serves {', '.join(known)} here "
            "(LABTRAIN_QUEUES adds named queues with backend celery)",
            param_hint="--queues",
        )
    if len(",".join(queue_list)) > 64:  # the worker registry's column
        raise click.BadParameter(
            "at most 64 characters of queue names per worker; start another", param_hint="--queues"
        )
    if concurrency is None:
        gpu = any(queue_catalog.device_of(settings, q) == "gpu" for q in queue_list)
        concurrency = 1 if gpu else os.cpu_count() or 1
    settings.ensure_dirs()
    install_subset(settings.data_dir)  # a worker on a host of its own reads mnist from its own data directory
    run_worker(settings, queue_list, concurrency, name)


worker.add_command(run_one)
