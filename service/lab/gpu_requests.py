"""What a job on a GPU queue (gpu, or a named one whose device is gpu) holds of a GPU: the memory it asked for (resources.gpu_memory_mb)
or its family's default, at most the largest GPU online. The dispatcher packs jobs onto GPUs
by this figure (service/lab/gpu_packing.py)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.core.errors import SpecError
from service.lab import worker_registry

FIELD = "resources.gpu_memory_mb"


def gpu_memory_for(
    session: Session, device: str, asked: int | None, default: int, queue: str | None = None
) -> int | None:
    """What a job running on `device` holds of a GPU: None on the CPU (what it asked is ignored).
    `queue`, where given, counts only the GPUs of the workers serving it."""
    if device != "gpu":
        return None
    online = worker_registry.online(session)
    workers = [w for w in online if w.serves(queue)] if queue else [w for w in online if w.has_gpu]
    largest = max((w.gpu_memory_mb or 0 for w in workers), default=0)
    if asked is None:
        return min(default, largest) if largest else default
    if largest and asked > largest:
        raise SpecError(
            f"{FIELD} is {asked} MB, more than the largest GPU online has ({largest} MB); ask for at most that",
            field=FIELD,
        )
    return asked
