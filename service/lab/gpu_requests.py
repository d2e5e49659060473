"""What a job on the GPU queue holds of a GPU: the memory it asked for (resources.gpu_memory_mb)
or its family's default, at most the largest GPU online. The dispatcher packs jobs onto GPUs
by this figure (service/lab/gpu_packing.py)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.core.errors import SpecError
from service.lab import worker_registry

FIELD = "resources.gpu_memory_mb"


def gpu_memory_for(session: Session, queue: str, asked: int | None, default: int) -> int | None:
    """What a job on `queue` holds of a GPU: None off the GPU queue (what it asked is ignored)."""
    if queue != "gpu":
        return None
    largest = max((w.gpu_memory_mb or 0 for w in worker_registry.online(session) if w.has_gpu), default=0)
    if asked is None:
        return min(default, largest) if largest else default
    if largest and asked > largest:
        raise SpecError(
            f"{FIELD} is {asked} MB, more than the largest GPU online has ({largest} MB); ask for at most that",
            field=FIELD,
        )
    return asked
