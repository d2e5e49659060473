"""`labtrain admin ...`: device usage per user, removing old jobs' files, the workers' state, the
queues' jobs (service/cli/admin_queues.py).

What each command does lives in service/lab (usage, retention, the worker registry); this
module reads the options and prints.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from sqlalchemy import select

from service.cli.admin_queues import queue
from service.core import uploads
from service.core.config import Settings
from service.core.db import one_session
from service.core.orm import Worker, utcnow
from service.lab import retention
from service.lab.usage import device_usage
from service.lab.worker_registry import ONLINE_SECONDS

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(value: str, now: datetime) -> datetime:
    """`7d`, `12h`, `2w`, `90m`, `30s` before `now`, or an ISO date or time (UTC unless it says)."""
    text = value.strip()
    match = re.fullmatch(r"(\d+)\s*([smhdw])", text)
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither an age such as 7d, 12h or 2w nor a date such as 2026-11-01"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@click.group()
def admin() -> None:
    """Operate the service: device usage, retention of old jobs' files, workers, queues."""


admin.add_command(queue)


def _session():
    return one_session(Settings.from_env().database_url)


def _table(header: list[str], rows: list[list[Any]]) -> None:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


# ---------------------------------------------------------------- usage


@admin.command("usage")
@click.option("--since", default="30d", show_default=True, help="an age (7d, 12h, 2w) or a date (2026-11-01, UTC)")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def usage(since: str, as_json: bool) -> None:
    """Device-hours per user and queue (a running job counts up to now)."""
    now = utcnow()
    start = parse_when(since, now)
    with _session() as session:
        rows = device_usage(session, start, now)
    if as_json:
        click.echo(json.dumps({"since": start.isoformat(), "until": now.isoformat(), "usage": rows}, indent=2))
        return
    click.echo(f"device-hours from {start:%Y-%m-%d %H:%M} to {now:%Y-%m-%d %H:%M} UTC")
    _table(
        ["user", "queue", "jobs", "device_hours"],
        [[r["user"], r["queue"], r["jobs"], f"{r['device_hours']:.2f}"] for r in rows],
    )


# ---------------------------------------------------------------- prune


@admin.command("prune")
@click.option(
    "--older-than",
    default=None,
    help="jobs that finished before this age (30d) or date (2026-11-01); default: LABTRAIN_RETENTION_DAYS days",
)
@click.option("--dry-run", is_flag=True, help="only print what would be removed")
@click.option("--keep-models", is_flag=True, help="remove the jobs' directories but keep every model")
@click.option("--by", "actor", default="admin", show_default=True, help="who prunes (audit log)")
def prune(older_than: str | None, dry_run: bool, keep_models: bool, actor: str) -> None:
    """Remove the files of jobs that finished before the cutoff (logs, checkpoints, search
    state) and their models unless a kept job still refers to them. Queued and running
    jobs are never touched. A course that ended more than LABTRAIN_COURSE_RETENTION_DAYS ago
    loses its jobs' files and models and its data sets, and is marked pruned."""
    settings = Settings.from_env()
    cutoff = parse_when(older_than or f"{settings.retention_days}d", utcnow())
    verb = "would remove" if dry_run else "removed"
    with _session() as session:
        pruned = retention.plan(session, settings, cutoff, keep_models=keep_models)
        for path, size in pruned.directories:
            click.echo(f"{verb} {path} ({size} bytes)")
        for model in pruned.models:
            if model.outside:
                click.echo(f"kept model {model.model_id}: {model.path} is outside {settings.artifact_dir}", err=True)
            else:
                click.echo(f"{verb} model {model.model_id} of job {model.job_id}: {model.path} ({model.size} bytes)")
        _echo_courses(pruned, verb)
        if not dry_run:
            retention.record(session, pruned, actor)
    if not dry_run:  # the rows are gone (committed) before the files: no row points at a missing file
        retention.remove_files(pruned)
    freed = pruned.bytes
    click.echo(
        f"{verb} {len(pruned.directories)} job directories and {len(pruned.removed_models)} models of "
        f"{pruned.old_jobs} jobs finished before {cutoff:%Y-%m-%d %H:%M} UTC: "
        f"{freed} bytes ({freed / 2**20:.1f} MiB) {'would be ' if dry_run else ''}freed"
    )
    if pruned.courses:
        marked = sum(course.marked for course in pruned.courses)
        click.echo(
            f"{verb} {len(pruned.removed_datasets)} data sets of {len(pruned.courses)} courses that ended more than "
            f"{settings.course_retention_days} days ago; {marked} {'would be ' if dry_run else ''}marked pruned"
        )
    if not dry_run:  # resumable uploads nobody added to for LABTRAIN_UPLOAD_EXPIRY_H
        with _session() as session:
            swept = uploads.sweep_expired(session, settings)
        if swept:
            click.echo(f"removed {swept} unfinished uploads older than {settings.upload_expiry_h:g} hours")


def _echo_courses(pruned: retention.PrunePlan, verb: str) -> None:
    for course in pruned.courses:
        if course.unfinished:
            click.echo(f"kept course {course.name}'s data sets: {course.unfinished} of its jobs are queued or running")
        for dataset in course.datasets:
            if dataset.kept:
                click.echo(f"kept data set {dataset.dataset_id} of course {course.name}: {dataset.kept}", err=True)
            else:
                click.echo(
                    f"{verb} data set {dataset.dataset_id} of course {course.name}: {dataset.path} ({dataset.size} bytes)"
                )
        for folder, size in course.competition_folders if course.marked else ():
            click.echo(f"{verb} competition {folder.name}'s predictions files of course {course.name} ({size} bytes)")


# ---------------------------------------------------------------- workers


@admin.command("workers")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def workers(as_json: bool) -> None:
    """Workers as their last heartbeat described them; online when it is recent."""
    now = utcnow()
    with _session() as session:
        rows = [
            {
                "name": w.name,
                "queues": w.queues.split(","),
                "host": w.host,
                "pid": w.pid,
                "concurrency": w.concurrency,
                "gpu_name": w.gpu_name,
                "gpu_memory_mb": w.gpu_memory_mb,
                "gpu_utilization": getattr(w, "gpu_utilization", None),
                "started_at": w.started_at.isoformat(),
                "heartbeat_at": w.heartbeat_at.isoformat(),
                "heartbeat_age_s": round((now - w.heartbeat_at).total_seconds(), 1),
                "online": (now - w.heartbeat_at).total_seconds() <= ONLINE_SECONDS,
            }
            for w in session.scalars(select(Worker).order_by(Worker.name))
        ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return

    def gpu(row: dict[str, Any]) -> str:
        if not row["gpu_name"]:
            return "-"
        return row["gpu_name"] + (f" ({row['gpu_memory_mb']} MiB)" if row["gpu_memory_mb"] else "")

    _table(
        ["name", "queues", "host", "concurrency", "gpu", "heartbeat", "state"],
        [
            [
                r["name"],
                ",".join(r["queues"]),
                r["host"],
                r["concurrency"],
                gpu(r),
                f"{r['heartbeat_age_s']:.0f}s ago",
                "online" if r["online"] else "offline",
            ]
            for r in rows
        ],
    )
