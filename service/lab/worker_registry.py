"""Which workers are online: each worker's main process heartbeats a row here."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Select, bindparam, delete, select
from sqlalchemy.orm import Session

from service.core import wakeups
from service.core.orm import Worker, utcnow

HEARTBEAT_SECONDS = 5.0
# A worker whose heartbeat is older than this is taken as gone.
ONLINE_SECONDS = 3 * HEARTBEAT_SECONDS


def heartbeat(
    session: Session,
    *,
    name: str,
    queues: list[str],
    host: str,
    pid: int,
    concurrency: int,
    gpu_name: str | None,
    gpu_memory_mb: int | None,
    gpu_utilization: int | None = None,
    gpu_memory_used_mb: int | None = None,
    capabilities: dict[str, Any] | None = None,
) -> None:
    worker = session.get(Worker, name)
    since = online_since()
    if worker is None or worker.heartbeat_at < since or worker.concurrency != concurrency:
        wakeups.notify(session, wakeups.WORKERS, {"worker": name})  # new slots: the dispatcher looks again
    if worker is None:
        worker = Worker(name=name)
        session.add(worker)
    worker.queues, worker.host, worker.pid, worker.concurrency = ",".join(queues), host, pid, concurrency
    worker.gpu_name, worker.gpu_memory_mb = gpu_name, gpu_memory_mb
    worker.gpu_utilization, worker.gpu_memory_used_mb = gpu_utilization, gpu_memory_used_mb
    worker.capabilities = capabilities
    worker.heartbeat_at = utcnow()


def remove(session: Session, name: str) -> None:
    session.execute(delete(Worker).where(Worker.name == name))


def online(session: Session) -> list[Worker]:
    return list(session.scalars(_online(), {"since": online_since()}))


def online_since() -> datetime:
    """The oldest heartbeat of a worker online now."""
    return utcnow() - timedelta(seconds=ONLINE_SECONDS)


@cache
def _online() -> Select:
    # Every look, round and refill asks it: built once.
    return select(Worker).where(Worker.heartbeat_at >= bindparam("since")).order_by(Worker.name)


def gpu_worker_online(session: Session) -> bool:
    return any(w.has_gpu for w in online(session))
