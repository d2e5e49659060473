"""Per-user limits: configured defaults, overridden per user by an admin."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.core import queues
from service.core.config import Settings
from service.core.errors import ServiceError
from service.core.orm import AuditEntry, Job, User
from service.jobs.lifecycle import QUEUED, RUNNING, add_event

LIMIT_NAMES = (
    "max_running_cpu",
    "max_running_gpu",
    "max_queued",
    "max_run_time_s",
    "max_memory_mb",
    "max_cpus",
    "storage_quota_mb",  # what the user's files may take (service/jobs/quota.py)
)


class LimitReached(ServiceError):
    status = 429
    code = "limit_reached"


def effective_limits(settings: Settings, user: User) -> dict[str, int]:
    limits = {name: int(getattr(settings, name)) for name in LIMIT_NAMES}
    limits.update({k: int(v) for k, v in (user.limits or {}).items() if k in LIMIT_NAMES})
    return limits


def running_limit(settings: Settings, user: User, queue: str) -> int:
    """How many of `user`'s jobs may run at once on `queue`: cpu's and gpu's their max_running_cpu
    and max_running_gpu; a named queue's its own max_running, else the one of its device."""
    config = queues.catalog(settings).get(queue)
    if config is not None and config.max_running is not None and queue not in queues.BUILTIN:
        return config.max_running
    return effective_limits(settings, user)[f"max_running_{queues.device_of(settings, queue)}"]


def check_can_queue(session: Session, settings: Settings, user: User) -> None:
    """A 429 naming the limit when the user already has as many queued jobs as allowed."""
    limit = effective_limits(settings, user)["max_queued"]
    queued = session.scalar(select(func.count()).select_from(Job).where(Job.owner_id == user.id, Job.status == QUEUED))
    if queued >= limit:
        raise LimitReached(
            f"queued-jobs limit reached: you have {queued} queued jobs and the limit is {limit}; "
            "wait for some to start or cancel some",
            field="max_queued",
            details={"limit": "max_queued", "value": limit},
        )


def set_limits(session: Session, user: User, changes: dict[str, int | None], actor: str) -> dict[str, Any]:
    """Override (or with None, reset) limits for a user; recorded in the audit log."""
    unknown = set(changes) - set(LIMIT_NAMES)
    if unknown:
        raise ValueError(f"unknown limits {sorted(unknown)}; known: {', '.join(LIMIT_NAMES)}")
    limits = dict(user.limits or {})
    for name, value in changes.items():
        if value is None:
            limits.pop(name, None)
        elif value < 0:
            raise ValueError(f"{name} must not be negative")
        else:
            limits[name] = value
    user.limits = limits or None
    session.add(AuditEntry(actor=actor, action="set_limits", target=user.name, details=changes))
    active = session.scalars(select(Job.id).where(Job.owner_id == user.id, Job.status.in_((QUEUED, RUNNING))))
    for job_id in active:
        add_event(
            session,
            job_id,
            "log",
            {
                "message": f"limits of {user.name} changed by {actor}",
                "audit": "set_limits",
                "by": actor,
                "changes": changes,
            },
        )
    return limits
