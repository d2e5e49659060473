"""`labtrain admin queue ...`: the queues' jobs, and those of a queue LABTRAIN_QUEUES no longer
names moved to a configured one or cancelled (service/lab/removed_queues.py says how)."""

from __future__ import annotations

import click
from sqlalchemy import func, select

from service.core import queues
from service.core.config import Settings
from service.core.db import one_session
from service.core.orm import Job
from service.jobs.lifecycle import QUEUED, RUNNING
from service.lab import removed_queues


@click.group("queue")
def queue() -> None:
    """Queued and running jobs per queue; move or cancel those of a queue no longer configured."""


@queue.command("list")
def queue_list() -> None:
    """Each queue with jobs or configured: whether it is configured, its queued and running jobs."""
    settings = Settings.from_env()
    configured = queues.catalog(settings)
    with one_session(settings.database_url) as session:
        counts = {
            (name, status): count
            for name, status, count in session.execute(
                select(Job.queue, Job.status, func.count())
                .where(Job.status.in_((QUEUED, RUNNING)))
                .group_by(Job.queue, Job.status)
            )
        }
    names = list(configured) + sorted({name for name, _status in counts} - set(configured))
    click.echo("queue\tconfigured\tqueued\trunning")
    for name in names:
        state = "yes" if name in configured else "NO"
        click.echo(f"{name}\t{state}\t{counts.get((name, QUEUED), 0)}\t{counts.get((name, RUNNING), 0)}")


@queue.command("move")
@click.argument("old")
@click.argument("new")
@click.option("--by", "actor", default="admin", show_default=True, help="who moves them (audit log)")
def queue_move(old: str, new: str, actor: str) -> None:
    """Move OLD's queued jobs to the configured queue NEW, each checked against it (its device,
    max and GPUs) as a submission there would be: one that does not fit stays in OLD, named."""
    settings = Settings.from_env()
    with one_session(settings.database_url) as session:
        try:
            moved = removed_queues.move(session, settings, old, new, actor)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        running = removed_queues.running(session, old)
    for job_id in moved.moved:
        shortened = moved.shortened.get(job_id)
        click.echo(f"moved {job_id}" + (f" (time limit now {shortened} s, queue {new}'s max)" if shortened else ""))
    for job_id, why in moved.stayed.items():
        click.echo(f"stayed in {old}: {job_id}: {why}", err=True)
    click.echo(f"{len(moved.moved)} job(s) moved from queue {old} to queue {new}, {len(moved.stayed)} stayed", err=True)
    if running:
        click.echo(f"{running} running job(s) of queue {old} finish where they run", err=True)


@queue.command("cancel")
@click.argument("old")
@click.option("--by", "actor", default="admin", show_default=True, help="who cancels them (audit log)")
def queue_cancel(old: str, actor: str) -> None:
    """Cancel the queued jobs of OLD, a queue no longer configured (its running ones finish; each
    can be cancelled as any job)."""
    settings = Settings.from_env()
    with one_session(settings.database_url) as session:
        try:
            cancelled = removed_queues.cancel(session, settings, old, actor)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        running = removed_queues.running(session, old)
    for job_id in cancelled:
        click.echo(f"cancelled {job_id}")
    click.echo(f"{len(cancelled)} queued job(s) of queue {old} cancelled", err=True)
    if running:
        click.echo(f"{running} running job(s) of queue {old} finish where they run", err=True)
