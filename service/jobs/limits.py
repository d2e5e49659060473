"""Per-user limits: configured defaults, overridden per user by an admin; a named queue's
running limit (its own max_running, else its device's) overridden per user too, stored among
the user's limits as `max_running_queue.<queue>`."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, func, select
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
QUEUE_LIMIT = "max_running_queue."  # + a named queue: the user's running jobs there


class LimitReached(ServiceError):
    status = 429
    code = "limit_reached"


def effective_limits(settings: Settings, user: User) -> dict[str, int]:
    return _with_defaults(settings, user.limits)


def _with_defaults(settings: Settings, stored: Mapping[str, Any] | None) -> dict[str, int]:
    limits = {name: int(getattr(settings, name)) for name in LIMIT_NAMES}
    limits.update({k: int(v) for k, v in (stored or {}).items() if k in LIMIT_NAMES})
    return limits


def queue_overrides(user: User) -> dict[str, int]:
    """The user's own running limits on named queues, by queue."""
    return _queue_overrides(user.limits)


def _queue_overrides(stored: Mapping[str, Any] | None) -> dict[str, int]:
    return {k[len(QUEUE_LIMIT) :]: int(v) for k, v in (stored or {}).items() if k.startswith(QUEUE_LIMIT)}


def running_limit(settings: Settings, stored: Mapping[str, Any] | None, queue: str) -> int:
    """How many of a user's jobs may run at once on `queue`: cpu's and gpu's their max_running_cpu
    and max_running_gpu; a named queue's the user's override there, else the queue's own
    max_running, else the one of its device. `stored`: the user's own limits (User.limits), which
    the dispatcher reads with the jobs it places."""
    return running_limit_and_source(settings, stored, queue)[0]


def running_limit_and_source(settings: Settings, stored: Mapping[str, Any] | None, queue: str) -> tuple[int, str]:
    """running_limit, and where it comes from: override (the user's own), queue (the queue's
    max_running) or default (its device's, which may be the user's override of that)."""
    if queue not in queues.BUILTIN:
        override = _queue_overrides(stored).get(queue)
        if override is not None:
            return override, "override"
        config = queues.catalog(settings).get(queue)
        if config is not None and config.max_running is not None:
            return config.max_running, "queue"
    return _with_defaults(settings, stored)[f"max_running_{queues.device_of(settings, queue)}"], "default"


def check_can_queue(session: Session, settings: Settings, user: User) -> None:
    """A 429 naming the limit when the user already has as many queued jobs as allowed."""
    limit = effective_limits(settings, user)["max_queued"]
    queued = session.scalar(_queued_of_owner(), {"owner": user.id})
    if queued >= limit:
        raise LimitReached(
            f"queued-jobs limit reached: you have {queued} queued jobs and the limit is {limit}; "
            "wait for some to start or cancel some",
            field="max_queued",
            details={"limit": "max_queued", "value": limit},
        )


@cache
def _queued_of_owner() -> Select:
    # Every submit asks it: built once.
    return select(func.count()).select_from(Job).where(Job.owner_id == bindparam("owner"), Job.status == QUEUED)


def set_limits(
    session: Session, user: User, changes: dict[str, int | None], actor: str, settings: Settings | None = None
) -> dict[str, Any]:
    """Override (or with None, reset) limits for a user; recorded in the audit log. A named queue's
    running limit (`max_running_queue.<queue>`) is set only for a queue `settings` configures."""
    unknown = {name for name in changes if name not in LIMIT_NAMES and not name.startswith(QUEUE_LIMIT)}
    if unknown:
        raise ValueError(f"unknown limits {sorted(unknown)}; known: {', '.join(LIMIT_NAMES)}, {QUEUE_LIMIT}<queue>")
    for name, value in changes.items():
        if name.startswith(QUEUE_LIMIT) and value is not None:  # dropping one of a removed queue stays possible
            _check_named_queue(settings, name[len(QUEUE_LIMIT) :])
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


def _check_named_queue(settings: Settings | None, queue: str) -> None:
    if settings is None:
        raise ValueError("a queue's running limit is set only with the settings that configure the queue")
    named = [name for name in queues.catalog(settings) if name not in queues.BUILTIN]
    if queue in queues.BUILTIN:
        raise ValueError(f"the {queue} queue's running limit is max_running_{queue} (--max-running-{queue})")
    if queue not in named:
        listed = ", ".join(named) if named else "none (LABTRAIN_QUEUES adds them)"
        raise ValueError(f"there is no named queue {queue!r}; the named queues here are {listed}")
