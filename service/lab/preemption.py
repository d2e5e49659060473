"""Preemption: a job that has waited LABTRAIN_PREEMPT_AFTER_S for a slot asks a running batch
job to yield one, when it is a debug job (service/jobs/tiers.py), or when its owner has used
the queue much less than the running job's owner: by LABTRAIN_PREEMPT_USAGE_GAP_S of fair
share's decayed device-seconds (4 hours of a whole device by default), so a student who has
not trained today is not stuck behind another's day-long run.

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
from service.jobs import families, lifecycle, tiers
from service.jobs.lifecycle import RUNNING
from service.jobs.tiers import DEBUG
from service.lab import gpu_packing
from service.lab.fair_share import usage_by_owner


def ask_to_yield(
    session: Session, settings: Settings, queue: str, now: datetime, gpus: dict[str, gpu_packing.Gpu] | None
) -> list[str]:
    """Ask running jobs to yield for jobs that waited too long; returns those asked. `gpus`: what
    the queue's GPUs have free now (None for CPUs)."""
    overdue = now - timedelta(seconds=settings.preempt_after_s)
    waiting = session.scalars(
        select(Job)
        .where(
            Job.queue == queue,
            lifecycle.waiting_for_a_slot(),
            families.takes_slot(),
            Job.created_at < overdue,
        )
        .order_by(Job.created_at, Job.id)
    ).all()
    waiting = [job for job in waiting if not job.waiting]  # one its course budget holds frees no slot for itself
    if not settings.preempt_usage_gap_s:
        waiting = [job for job in waiting if job.tier == DEBUG]
    if not waiting:
        return []
    usage = usage_by_owner(session, queue, settings.usage_half_life_s, now)
    waiting.sort(key=lambda job: (tiers.rank(job.tier), usage.get(job.owner_id, 0.0), job.created_at))
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
    asked = []
    for waiter in waiting[yielding:]:
        victim = next(
            (
                job
                for job in candidates
                if _outranks(waiter, job, usage, settings) and _frees_enough(job, waiter, gpus, settings)
            ),
            None,
        )
        if victim is None:
            continue
        candidates.remove(victim)
        victim.preempt_requested = True
        waited = int((now - waiter.created_at).total_seconds())
        why = "debug job" if waiter.tier == DEBUG else "job of a student who has used the queue much less,"
        lifecycle.add_event(
            session,
            victim.id,
            "log",
            {
                "message": f"asked to yield its slot to {why} {waiter.id}, which has waited {waited} s: "
                "it checkpoints at its next epoch's end, goes back to the queue and resumes from there",
                "preempted_by": waiter.id,
            },
        )
        asked.append(victim.id)
    return asked


def _outranks(waiter: Job, running: Job, usage: dict[str, float], settings: Settings) -> bool:
    """Whether `waiter` may take `running`'s slot: a debug job may take a batch job's; a batch
    job only one whose owner has used the queue preempt_usage_gap_s more than its own."""
    if waiter.tier == DEBUG:
        return True
    gap = usage.get(running.owner_id, 0.0) - usage.get(waiter.owner_id, 0.0)
    return bool(settings.preempt_usage_gap_s) and gap >= settings.preempt_usage_gap_s


def _frees_enough(victim: Job, waiting: Job, gpus: dict[str, gpu_packing.Gpu] | None, settings: Settings) -> bool:
    if gpus is None:
        return True  # a CPU slot is a slot
    gpu = gpus.get(victim.worker or "")
    if gpu is None:
        return False
    return gpu.free_mb + gpu.held_by(victim.gpu_memory_mb) >= gpu_packing.need_mb(waiting, settings)
