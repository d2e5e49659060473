"""Packing jobs onto shared GPUs by memory.

Each GPU worker advertises its GPU's memory (NVML) and how many jobs it runs at once (its
concurrency). A GPU job holds the memory it asked for (service/lab/gpu_requests.py) from the
moment the dispatcher sends it to a worker until it ends; the dispatcher sends it to the
worker whose GPU it fits best (the least memory left over), so small jobs fill one card
before they spread and a large one still finds room. Nothing is ever over-committed: the
memory held on a GPU never exceeds its size, nor the jobs its worker's slots.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from service.core.config import Settings
from service.core.orm import Job, Worker
from service.jobs import families
from service.jobs.lifecycle import QUEUED, RUNNING
from service.lab.devices import gpu_jobs


@dataclass
class Gpu:
    worker: str
    total_mb: int | None  # None: the worker could not read its GPU's size; packed by slots only
    free_mb: float
    free_slots: int

    def fits(self, need_mb: int) -> bool:
        return self.free_slots > 0 and self.free_mb >= need_mb

    def take(self, need_mb: int) -> None:
        self.free_slots -= 1
        self.free_mb -= need_mb

    def share(self, need_mb: int) -> float:
        """The part of this GPU a job of `need_mb` holds (what fair share weighs its seconds by)."""
        return min(1.0, need_mb / self.total_mb) if self.total_mb else 1.0

    def held_by(self, job_memory_mb: int | None) -> float:
        """What a job placed here holds: its memory; one placed before GPUs were shared, the GPU."""
        return job_memory_mb if job_memory_mb is not None else (self.total_mb or 0)


def need_mb(job: Job, settings: Settings) -> int:
    """What a GPU job needs of a GPU (a job queued before GPUs were shared asked for nothing)."""
    return job.gpu_memory_mb or families.default_gpu_memory_mb(job.family, settings)


def gpus(session: Session, workers: list[Worker]) -> dict[str, Gpu]:
    """The GPU workers online with what their GPUs have free now: `workers` serve a GPU queue (gpu,
    or a named one whose device is gpu)."""
    found = {w.name: Gpu(w.name, w.gpu_memory_mb, float(w.gpu_memory_mb or "inf"), w.concurrency) for w in workers}
    held = session.execute(
        select(Job.worker, Job.gpu_memory_mb).where(
            gpu_jobs(),  # on any queue the worker serves
            families.takes_slot(),
            Job.worker.in_(list(found)),
            or_(Job.status == RUNNING, (Job.status == QUEUED) & Job.released_at.is_not(None)),
        )
    )
    for worker, memory_mb in held:
        found[worker].take(found[worker].held_by(memory_mb))
    return found


def place(found: dict[str, Gpu], need_mb: int) -> Gpu | None:
    """The GPU a job needing `need_mb` fits best, or None when it fits none now."""
    fitting = [gpu for gpu in found.values() if gpu.fits(need_mb)]
    return min(fitting, key=lambda gpu: (gpu.free_mb - need_mb, gpu.worker)) if fitting else None
