"""Jobs in a queue LABTRAIN_QUEUES no longer names (an admin removed it and restarted).

A configuration mistake must not fail a class's jobs: its queued jobs stay queued, but no round
sends them, and every view of them says why (`waiting`: `queue_not_configured`, no position, no
estimated start). An admin moves them to a configured queue, each checked against it as a
submission would be (`labtrain admin queue move OLD NEW`), or cancels them (`labtrain admin queue
cancel OLD`); both are in the audit log and in each job's events. A running job of such a queue
finishes where it runs and can be cancelled as any job; on SLURM the dispatcher still reconciles
it (service/slurm/backend.py).
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from service.core import queues
from service.core.config import Settings
from service.core.errors import SpecError
from service.core.orm import AuditEntry, Job, utcnow
from service.jobs import families
from service.jobs.lifecycle import CANCELLED, QUEUED, RUNNING, add_event
from service.lab.devices import Placement, check_resources
from service.lab.gpu_requests import gpu_memory_for

NOT_CONFIGURED = "queue_not_configured"  # the `waiting` reason


def waiting_reason(queue: str) -> dict[str, str]:
    return {
        "reason": NOT_CONFIGURED,
        "message": f"queue {queue} is no longer configured on this server: the job waits, not sent to any "
        f"worker, until an admin moves it to another queue or configures {queue} again",
    }


def waiting(job: Job, configured: Container[str]) -> dict[str, Any] | None:
    """Why a queued job is not sent: its queue not among the `configured` ones (the catalog's
    names, read once per request), else what the dispatcher wrote (its course budget); None for a
    job not queued."""
    if job.status != QUEUED:
        return None
    if job.queue not in configured:
        return waiting_reason(job.queue)
    return job.waiting


@dataclass
class Moved:
    moved: list[str] = field(default_factory=list)
    stayed: dict[str, str] = field(default_factory=dict)  # job id -> why it stays in its queue
    shortened: dict[str, int] = field(default_factory=dict)  # job id -> the new queue's time limit


def move(session: Session, settings: Settings, old: str, new: str, actor: str) -> Moved:
    """Move the queued jobs of `old` that no worker has taken to the configured queue `new`;
    a job that does not fit `new` (its device, resources past its max, GPU memory past its
    largest GPU online) stays, named with why. A ValueError for a `new` that is no queue."""
    configured = queues.catalog(settings)
    target = configured.get(new)
    if target is None:
        raise ValueError(f"there is no queue {new!r}; the queues here are {', '.join(configured)}")
    if new == old:
        raise ValueError(f"the jobs are in queue {old} already; name another queue to move them to")
    result = Moved()
    jobs = session.scalars(
        select(Job)
        .where(Job.queue == old, Job.status == QUEUED, families.takes_slot())
        .order_by(Job.id)
        .with_for_update()
    ).all()
    for job in jobs:
        if job.released_at is not None or job.backend_id is not None:
            result.stayed[job.id] = _sent(job, old in configured)
            continue
        why = _misfit(session, job, target)
        if why:
            result.stayed[job.id] = why
            continue
        values: dict[str, Any] = {"queue": new, "waiting": None, "worker": None, "gpu_share": None}
        most = target.max.time_limit_s
        shortened = most if most and (job.time_limit_s or 0) > most else None
        if shortened:  # at most the new queue's largest, as a submission there would get
            values["time_limit_s"] = shortened
        moved = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.queue == old, Job.status == QUEUED, Job.released_at.is_(None))
            .values(**values)
        ).rowcount
        if not moved:
            result.stayed[job.id] = "it left the queue meanwhile (started or cancelled)"
            continue
        # A status event: it wakes the dispatcher, which sends the job in its new queue's turn.
        event = {"status": QUEUED, "queue": new, "by": actor, "reason": f"moved from queue {old} to queue {new}"}
        if shortened:
            event["time_limit_s"] = result.shortened[job.id] = shortened
        add_event(session, job.id, "status", event)
        result.moved.append(job.id)
    session.add(
        AuditEntry(
            actor=actor,
            action="move_queue",
            target=old,
            details={"to": new, "moved": result.moved, "stayed": result.stayed},
        )
    )
    return result


def _sent(job: Job, configured: bool) -> str:
    where = f"SLURM (job {job.backend_id})" if job.backend_id else "a worker"
    if configured:
        return f"already sent to {where}: it starts there"
    # The dispatcher takes such a job back (service/dispatcher.py; on SLURM, scancelled at its next poll).
    return f"sent to {where} before its queue was removed; the dispatcher takes it back: move it again then"


def _misfit(session: Session, job: Job, target: queues.QueueConfig) -> str | None:
    """Why `job` cannot go to `target`, or None: what a submission to it would refuse."""
    device = job_device(job)
    if device != target.device:
        return f"it runs on the {device.upper()} and queue {target.name}'s jobs run on the {target.device.upper()}"
    resources = job.spec.get("resources") if isinstance(job.spec.get("resources"), dict) else {}
    try:
        check_resources(
            Placement(target.name, device, target.max), {name: resources.get(name) for name in queues.LIMIT_KEYS}
        )
        if device == "gpu" and job.gpu_memory_mb is not None:
            gpu_memory_for(session, "gpu", job.gpu_memory_mb, job.gpu_memory_mb, queue=target.name)
    except SpecError as exc:
        return exc.message
    return None


def job_device(job: Job) -> str:
    """cpu or gpu: what a queued job runs on, from its run (a queue's device is gone with it)."""
    device = job.spec.get("device")
    if device in queues.DEVICES:
        return device
    return "gpu" if job.queue == "gpu" or job.gpu_memory_mb is not None else "cpu"


def cancel(session: Session, settings: Settings, queue: str, actor: str) -> list[str]:
    """Cancel the queued jobs of `queue`, which must be one no longer configured (a ValueError
    otherwise: a configured queue's jobs are cancelled one by one). Returns their ids."""
    if queue in queues.catalog(settings):
        raise ValueError(
            f"queue {queue} is configured: its jobs are cancelled one by one (`labtrain cancel`); "
            "this cancels only the jobs of a queue no longer configured"
        )
    now, cancelled = utcnow(), []
    for job_id in session.scalars(select(Job.id).where(Job.queue == queue, Job.status == QUEUED).order_by(Job.id)):
        done = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == QUEUED)
            .values(status=CANCELLED, cancel_requested=True, finished_at=now)
        ).rowcount
        if done:
            reason = f"queue {queue} is no longer configured"
            add_event(session, job_id, "status", {"status": CANCELLED, "by": actor, "reason": reason})
            cancelled.append(job_id)
    session.add(AuditEntry(actor=actor, action="cancel_queue", target=queue, details={"cancelled": cancelled}))
    return cancelled


def running(session: Session, queue: str) -> int:
    """The running jobs of `queue`: they finish where they run (or are cancelled one by one)."""
    return session.scalar(select(func.count()).select_from(Job).where(Job.queue == queue, Job.status == RUNNING))
