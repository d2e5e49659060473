"""`labtrain admin ...`: device usage per user, removing old jobs' files, the workers' state.

Retention (`labtrain admin prune`): a job's files are its directory under the artifact
directory (`jobs/<id>`: log, checkpoints, a search's saved state) and its model. Only
jobs that finished (succeeded, failed or cancelled) before the cutoff are touched; queued
and running jobs never are. A model of such a job is removed too (file and row), unless
something that is kept still refers to it:
  - a job that is kept names it as its `result.model_id` (a search's best model is a
    trial's model: it stays while the search is kept), or
  - its job is a trial of a search that is kept (the search may still pick it as its best).
Job rows, their metrics, events and uploaded data sets are kept. Each pruned job gets a
`log` event saying so, and each prune is written to the audit log.
"""
from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from service.config import Settings

if TYPE_CHECKING:  # the database modules load only when a command runs
    from sqlalchemy.orm import Session

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
        raise click.BadParameter(f"{value!r} is neither an age such as 7d, 12h or 2w "
                                 "nor a date such as 2026-11-01") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@click.group()
def admin() -> None:
    """Operate the service: device usage, retention of old jobs' files, workers."""


def _session():
    from service.db import one_session

    return one_session(Settings.from_env().database_url)


def _table(header: list[str], rows: list[list[Any]]) -> None:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


# ---------------------------------------------------------------- usage

def device_usage(session: Session, since: datetime, now: datetime) -> list[dict[str, Any]]:
    """Device-hours per user and queue between `since` and `now`: each job's run from
    `started_at` to `finished_at` (a running job's up to now), the part inside the window.
    A search holds no device (its trials are jobs of their own and count), so it is left out."""
    from sqlalchemy import or_, select

    from service.jobs import RUNNING
    from service.search import SEARCH
    from service.tables import Job, User

    rows = session.execute(
        select(User.name, Job.queue, Job.started_at, Job.finished_at).join(User, User.id == Job.owner_id)
        .where(Job.family != SEARCH, Job.started_at.is_not(None), Job.started_at < now,
               or_(Job.finished_at >= since, Job.finished_at.is_(None) & (Job.status == RUNNING))))
    totals: dict[tuple[str, str], list[float]] = {}
    for user, queue, started, finished in rows:
        seconds = (min(finished or now, now) - max(started, since)).total_seconds()
        if seconds <= 0:
            continue
        total = totals.setdefault((user, queue), [0, 0.0])
        total[0] += 1
        total[1] += seconds
    return [{"user": user, "queue": queue, "jobs": jobs, "device_hours": round(seconds / 3600, 4)}
            for (user, queue), (jobs, seconds) in sorted(totals.items())]


@admin.command("usage")
@click.option("--since", default="30d", show_default=True,
              help="an age (7d, 12h, 2w) or a date (2026-11-01, UTC)")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def usage(since: str, as_json: bool) -> None:
    """Device-hours per user and queue (a running job counts up to now)."""
    from service.tables import utcnow

    now = utcnow()
    start = parse_when(since, now)
    with _session() as session:
        rows = device_usage(session, start, now)
    if as_json:
        click.echo(json.dumps({"since": start.isoformat(), "until": now.isoformat(), "usage": rows}, indent=2))
        return
    click.echo(f"device-hours from {start:%Y-%m-%d %H:%M} to {now:%Y-%m-%d %H:%M} UTC")
    _table(["user", "queue", "jobs", "device_hours"],
           [[r["user"], r["queue"], r["jobs"], f"{r['device_hours']:.2f}"] for r in rows])


# ---------------------------------------------------------------- prune

def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return path.stat().st_size if path.exists() else 0


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


@admin.command("prune")
@click.option("--older-than", default=None,
              help="jobs that finished before this age (30d) or date (2026-11-01); "
                   "default: LABTRAIN_RETENTION_DAYS days")
@click.option("--dry-run", is_flag=True, help="only print what would be removed")
@click.option("--keep-models", is_flag=True, help="remove the jobs' directories but keep every model")
@click.option("--by", "actor", default="admin", show_default=True, help="who prunes (audit log)")
def prune(older_than: str | None, dry_run: bool, keep_models: bool, actor: str) -> None:
    """Remove the files of jobs that finished before the cutoff (logs, checkpoints, search
    state) and their models unless a kept job still refers to them. Queued and running
    jobs are never touched."""
    from sqlalchemy import and_, delete, not_, or_, select

    from service import storage
    from service.jobs import FINISHED, add_event
    from service.tables import AuditEntry, Job, Model, utcnow

    settings = Settings.from_env()
    now = utcnow()
    cutoff = parse_when(older_than or f"{settings.retention_days}d", now)
    old = and_(Job.status.in_(FINISHED), Job.finished_at < cutoff)
    verb = "would remove" if dry_run else "removed"
    freed, removed_dirs, removed_models = 0, [], []
    with _session() as session:
        old_ids = list(session.scalars(select(Job.id).where(old).order_by(Job.id)))
        for job_id in old_ids:
            path = storage.job_dir(settings, job_id)
            if path.exists():
                size = _size(path)
                click.echo(f"{verb} {path} ({size} bytes)")
                freed += size
                removed_dirs.append(path)
        models: list[Model] = []
        if not keep_models:
            kept = not_(old)
            referenced = set(session.scalars(select(Job.result["model_id"].as_string())
                                             .where(kept, Job.result.is_not(None))))
            kept_parents = select(Job.id).where(kept)
            candidates = session.scalars(
                select(Model).join(Job, Job.id == Model.job_id)
                .where(old, or_(Job.parent_id.is_(None), Job.parent_id.not_in(kept_parents)))
                .order_by(Model.id))
            for model in candidates:
                path = Path(model.artifact_path)
                if model.id in referenced:
                    continue
                if not _inside(path, settings.artifact_dir):
                    click.echo(f"kept model {model.id}: {path} is outside {settings.artifact_dir}", err=True)
                    continue
                size = _size(path)
                click.echo(f"{verb} model {model.id} of job {model.job_id}: {path} ({size} bytes)")
                freed += size
                models.append(model)
        removed_models = [(m.id, m.job_id, Path(m.artifact_path)) for m in models]
        if not dry_run and (removed_dirs or removed_models):
            model_jobs = {job_id for _model, job_id, _path in removed_models}
            if removed_models:
                session.execute(delete(Model).where(Model.id.in_([m for m, _j, _p in removed_models])))
            pruned_jobs = sorted({p.name for p in removed_dirs} | model_jobs)
            for job_id in pruned_jobs:
                add_event(session, job_id, "log", {
                    "message": f"files removed by {actor} (retention: finished before {cutoff:%Y-%m-%d %H:%M} UTC)"
                               + ("; its model was removed" if job_id in model_jobs else ""),
                    "audit": "prune", "by": actor})
            session.add(AuditEntry(actor=actor, action="prune", target=f"finished before {cutoff.isoformat()}",
                                   details={"cutoff": cutoff.isoformat(), "jobs": len(pruned_jobs),
                                            "job_directories": len(removed_dirs),
                                            "models": [m for m, _j, _p in removed_models], "bytes_freed": freed}))
    if not dry_run:  # the rows are gone (committed) before the files: no row points at a missing file
        for path in removed_dirs:
            _remove(path)
        for _model, _job, path in removed_models:
            _remove(path)
    click.echo(f"{verb} {len(removed_dirs)} job directories and {len(removed_models)} models of "
               f"{len(old_ids)} jobs finished before {cutoff:%Y-%m-%d %H:%M} UTC: "
               f"{freed} bytes ({freed / 2**20:.1f} MiB) {'would be ' if dry_run else ''}freed")


# ---------------------------------------------------------------- workers

@admin.command("workers")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def workers(as_json: bool) -> None:
    """Workers as their last heartbeat described them; online when it is recent."""
    from sqlalchemy import select

    from service.tables import Worker, utcnow
    from service.worker_registry import ONLINE_SECONDS

    now = utcnow()
    with _session() as session:
        rows = [{
            "name": w.name, "queues": w.queues.split(","), "host": w.host, "pid": w.pid,
            "concurrency": w.concurrency, "gpu_name": w.gpu_name, "gpu_memory_mb": w.gpu_memory_mb,
            "gpu_utilization": getattr(w, "gpu_utilization", None),
            "started_at": w.started_at.isoformat(), "heartbeat_at": w.heartbeat_at.isoformat(),
            "heartbeat_age_s": round((now - w.heartbeat_at).total_seconds(), 1),
            "online": (now - w.heartbeat_at).total_seconds() <= ONLINE_SECONDS,
        } for w in session.scalars(select(Worker).order_by(Worker.name))]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return

    def gpu(row: dict[str, Any]) -> str:
        if not row["gpu_name"]:
            return "-"
        return row["gpu_name"] + (f" ({row['gpu_memory_mb']} MiB)" if row["gpu_memory_mb"] else "")

    _table(["name", "queues", "host", "concurrency", "gpu", "heartbeat", "state"],
           [[r["name"], ",".join(r["queues"]), r["host"], r["concurrency"], gpu(r),
             f"{r['heartbeat_age_s']:.0f}s ago", "online" if r["online"] else "offline"] for r in rows])
