"""The catalog of algorithms, the queue overview and the health check."""

from __future__ import annotations

from flask import Blueprint, Flask
from sqlalchemy import func, select

from service.api.auth import current_user, db_session
from service.api.context import services
from service.api.serialize import iso, queue_position
from service.core import queues as queue_catalog
from service.core.orm import Job
from service.jobs import families
from service.jobs.lifecycle import QUEUED, RUNNING
from service.jobs.limits import running_limit
from service.lab import removed_queues, worker_registry

bp = Blueprint("catalog", __name__)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.get("/healthz")
def healthz():
    return {"status": "ok"}


@bp.get("/api/v1/algorithms")
def algorithms():
    """Each job family's section of the catalog, under its key, and the families themselves
    (what a client offers: each one's name, the spec key that selects it, its title, its section)."""
    found = families.submittable()
    listed = [{"name": f.name, "key": f.key, "title": f.title or f.name, "section": f.catalog_key} for f in found]
    return {"families": listed, **{family.catalog_key: family.catalog() for family in found}}


@bp.get("/api/v1/queue")
def queue():
    session = db_session()
    workers = worker_registry.online(session)
    settings, user = services().settings, current_user()
    configured = queue_catalog.catalog(settings)
    counts = dict.fromkeys(((q, s) for q in configured for s in (QUEUED, RUNNING)), 0)
    for queue_name, status, count in session.execute(
        select(Job.queue, Job.status, func.count())
        .where(Job.status.in_((QUEUED, RUNNING)))
        .group_by(Job.queue, Job.status)
    ):
        counts[(queue_name, status)] = count
    # A queue an admin has since removed while jobs of it are queued or running: listed as not
    # configured, so that its students see where their jobs are and why they wait.
    removed = sorted({q for q, _status in counts} - set(configured))
    mine = session.scalars(select(Job).where(Job.owner_id == user.id, Job.status == QUEUED).order_by(Job.id))
    yours = [
        {
            "id": job.id,
            "name": job.name,
            "queue": job.queue,
            "position": queue_position(session, job),
            "waiting": removed_queues.waiting(job, configured),
            "created_at": iso(job.created_at),
        }
        for job in mine
    ]
    return {
        "queues": {
            q: {
                "queued": counts[(q, QUEUED)],
                "running": counts[(q, RUNNING)],
                "workers": [_worker_view(w) for w in workers if q in w.queues.split(",")],
                **_queue_view(config),
                "your_max_running": running_limit(settings, user.limits, q),
            }
            for q, config in configured.items()
        },
        # Apart from `queues`, which clients offer to submit to: none of these takes a job.
        "not_configured": {
            q: {
                "queued": counts.get((q, QUEUED), 0),
                "running": counts.get((q, RUNNING), 0),
                "message": removed_queues.waiting_reason(q)["message"],
            }
            for q in removed
        },
        "your_queued_jobs": yours,
    }


def _queue_view(config: queue_catalog.QueueConfig) -> dict:
    """What a student may know of a queue to choose it: never the SLURM accounts or environment."""
    return {
        "backend": config.backend,
        "device": config.device,
        "partition": config.entry.get("partition") if config.backend == "slurm" else None,
        "max": config.max.as_dict(),
        "max_running": config.max_running,
        "description": config.description,
    }


def _worker_view(worker) -> dict:
    return {
        "name": worker.name,
        "host": worker.host,
        "concurrency": worker.concurrency,
        "gpu": {"name": worker.gpu_name, "memory_mb": worker.gpu_memory_mb} if worker.gpu_name else None,
        "heartbeat_at": iso(worker.heartbeat_at),
    }
