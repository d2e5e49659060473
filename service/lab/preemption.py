"""Preemption: a debug job that has waited LABTRAIN_PREEMPT_AFTER_S for a slot asks a running
batch job to yield one (service/jobs/tiers.py).

The job asked is the one that costs least to interrupt: of the queue's running batch jobs
whose family can checkpoint and stop (`Family.preemptible`), the one that started last (the
least work since a checkpoint; a network job checkpoints at least every
LABTRAIN_CHECKPOINT_EVERY_S); on the GPU queue, one whose going frees enough of its GPU. Its
worker sees `preempt_requested`, the trainer writes a checkpoint at the next epoch's end and
stops, and the job goes back to the queue without spending an attempt
(lifecycle.requeue_preempted); the debug job, first in the order, takes the slot. Each
running job already asked makes room for one waiting debug job, so no more are asked than
needed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.core.config import Settings
from service.core.orm import Job
from service.jobs import families, lifecycle
from service.jobs.lifecycle import QUEUED, RUNNING
from service.jobs.tiers import DEBUG
from service.lab import gpu_packing, worker_registry


def ask_to_yield(session: Session, settings: Settings, queue: str, now: datetime) -> list[str]:
    """Ask running batch jobs to yield for debug jobs waiting too long; returns those asked."""
    overdue = now - timedelta(seconds=settings.preempt_after_s)
    waiting = session.scalars(
        select(Job)
        .where(
            Job.queue == queue,
            Job.status == QUEUED,
            Job.released_at.is_(None),
            Job.tier == DEBUG,
            families.takes_slot(),
            Job.created_at < overdue,
        )
        .order_by(Job.created_at, Job.id)
    ).all()
    if not waiting:
        return []
    running = session.scalars(select(Job).where(Job.queue == queue, Job.status == RUNNING, families.takes_slot())).all()
    yielding = sum(1 for job in running if job.preempt_requested)
    candidates = sorted(
        (
            job
            for job in running
            if job.tier != DEBUG and not job.preempt_requested and families.get(job.family).preemptible
        ),
        key=lambda job: (job.started_at, job.id),
        reverse=True,  # the latest start first
    )
    gpus = gpu_packing.gpus(session, worker_registry.online(session)) if queue == "gpu" else None
    asked = []
    for debug_job in waiting[yielding:]:
        victim = next((job for job in candidates if _frees_enough(job, debug_job, gpus, settings)), None)
        if victim is None:
            break
        candidates.remove(victim)
        victim.preempt_requested = True
        waited = int((now - debug_job.created_at).total_seconds())
        lifecycle.add_event(
            session,
            victim.id,
            "log",
            {
                "message": f"asked to yield its slot to debug job {debug_job.id}, which has waited {waited} s: "
                "it checkpoints at its next epoch's end, goes back to the queue and resumes from there",
                "preempted_by": debug_job.id,
            },
        )
        asked.append(victim.id)
    return asked


def _frees_enough(victim: Job, waiting: Job, gpus: dict[str, gpu_packing.Gpu] | None, settings: Settings) -> bool:
    if gpus is None:
        return True  # a CPU slot is a slot
    gpu = gpus.get(victim.worker or "")
    if gpu is None:
        return False
    held = victim.gpu_memory_mb if victim.gpu_memory_mb is not None else (gpu.total_mb or 0)
    return gpu.free_mb + held >= (waiting.gpu_memory_mb or settings.gpu_memory_network_mb)
