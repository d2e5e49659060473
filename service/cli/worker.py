"""`labtrain worker`: a Celery worker that trains jobs; `labtrain worker run-one`: one job (SLURM)."""

from __future__ import annotations

import os

import click

from service.cli.run_one import run_one
from service.core.config import Settings
from service.data.fetch import install_subset
from workers.celery_app import run_worker


@click.group(invoke_without_command=True)
@click.option("--queues", default="cpu", show_default=True, help="comma-separated: cpu, gpu")
@click.option("--concurrency", default=None, type=int, help="jobs at once (default: CPU cores, 1 on gpu)")
@click.option("--name", default=None, help="worker name (default: queues@host)")
@click.pass_context
def worker(ctx: click.Context, queues: str, concurrency: int | None, name: str | None) -> None:
    """Run a Celery worker that trains jobs from the given queues (`run-one`: one job, on a SLURM node)."""
    if ctx.invoked_subcommand is not None:
        return
    queue_list = [q.strip() for q in queues.split(",") if q.strip()]
    if concurrency is None:
        concurrency = 1 if "gpu" in queue_list else os.cpu_count() or 1
    settings = Settings.from_env()
    settings.ensure_dirs()
    install_subset(settings.data_dir)  # a worker on a host of its own reads mnist from its own data directory
    run_worker(settings, queue_list, concurrency, name)


worker.add_command(run_one)
