"""Which queue a job goes to, from the queue its spec names or else the device it asks for: one
rule for every family. A named queue is one LABTRAIN_QUEUES adds (service/core/queues.py)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, or_
from sqlalchemy.orm import Session

from service.core import queues
from service.core.errors import SpecError
from service.core.orm import Job
from service.jobs.context import SubmitContext
from service.lab.worker_registry import gpu_worker_online


@dataclass(frozen=True)
class Placement:
    queue: str
    device: str  # cpu or gpu: what the job runs on (its run's `device`)
    max: queues.Limits  # the largest resources the queue takes


def queue_for(session: Session, device: str) -> str:
    """The GPU queue for a job that asks for a GPU, or says "auto" while a GPU worker is online;
    else the CPU queue."""
    return "gpu" if device == "gpu" or (device == "auto" and gpu_worker_online(session)) else "cpu"


def place(ctx: SubmitContext, device: str, queue: str | None, cpu_only: str | None = None) -> Placement:
    """The queue a spec's job goes to: the one it names (a 422 naming `queue` for one that does not
    exist or does not fit its device), else cpu or gpu by its device. `cpu_only` is the family's
    reason where its jobs never use a GPU."""
    configured = queues.catalog(ctx.settings)
    if queue is None:
        chosen = "cpu" if cpu_only else queue_for(ctx.session, device)
        return Placement(chosen, chosen, configured[chosen].max)
    config = configured.get(queue)
    if config is None:
        raise SpecError(
            f"there is no queue {queue!r}; the queues here are {', '.join(configured)} (GET /api/v1/queue)",
            field="queue",
            code="unknown_queue",
            details={"queues": list(configured)},
        )
    cpu_queues = ", ".join(name for name, q in configured.items() if q.device == "cpu")
    if config.device == "gpu" and cpu_only:
        raise SpecError(f"{cpu_only}; {queue} is a GPU queue: choose one of {cpu_queues}", field="queue")
    if device == "gpu" and config.device != "gpu":
        gpu_queues = ", ".join(name for name, q in configured.items() if q.device == "gpu")
        raise SpecError(
            f"queue {queue} has no GPUs and this job asks for one (device gpu): choose a GPU queue "
            f"({gpu_queues}) or device auto",
            field="queue",
        )
    if device == "cpu" and config.device == "gpu":
        raise SpecError(
            f"queue {queue} runs its jobs on GPUs and this job asks for the CPU (device cpu): choose one of "
            f"{cpu_queues}, or device auto",
            field="queue",
        )
    return Placement(queue, config.device, config.max)


def check_resources(placement: Placement, asked: dict[str, int | None]) -> None:
    """A 422 naming the resource a job asks for past its queue's `max`."""
    for name, value in asked.items():
        most = getattr(placement.max, name, None)
        if value is not None and most is not None and value > most:
            raise SpecError(
                f"resources.{name} may be at most {most} on queue {placement.queue}",
                field=f"resources.{name}",
                details={"limit": most, "queue": placement.queue},
            )


def is_gpu_job(queue: str, gpu_memory_mb: int | None) -> bool:
    """Whether a job holds a GPU: one on the gpu queue, or on a named GPU queue (where its
    submission set what it holds of the GPU, service/lab/gpu_requests.py)."""
    return queue == "gpu" or gpu_memory_mb is not None


def gpu_jobs() -> ColumnElement[bool]:
    """is_gpu_job as SQL."""
    return or_(Job.queue == "gpu", Job.gpu_memory_mb.is_not(None))
