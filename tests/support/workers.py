"""A worker as the dispatcher and the API see it: its heartbeat row, with no process behind it
(a simulated GPU worker claims a GPU of a given size)."""

from __future__ import annotations

from service.core.db import Database
from service.lab import worker_registry


def heartbeat(
    db: Database,
    name: str,
    queue: str = "gpu",
    concurrency: int = 1,
    gpu_memory_mb: int | None = None,
    gpu_name: str | None = None,
) -> None:
    with db.session() as session:
        worker_registry.heartbeat(
            session,
            name=name,
            queues=[queue],
            host="lab",
            pid=1,
            concurrency=concurrency,
            gpu_name=gpu_name,
            gpu_memory_mb=gpu_memory_mb,
        )
