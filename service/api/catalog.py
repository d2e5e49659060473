"""The catalog of algorithms, the queue overview and the health check."""

from __future__ import annotations

from flask import Blueprint, Flask
from sqlalchemy import func, select

from service.api.auth import current_user, db_session
from service.api.serialize import iso, queue_position
from service.core.broker import QUEUES
from service.core.orm import Job
from service.jobs import families
from service.jobs.lifecycle import QUEUED, RUNNING
from service.lab import worker_registry

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
    counts = dict.fromkeys(((q, s) for q in QUEUES for s in (QUEUED, RUNNING)), 0)
    for queue_name, status, count in session.execute(
        select(Job.queue, Job.status, func.count())
        .where(Job.status.in_((QUEUED, RUNNING)))
        .group_by(Job.queue, Job.status)
    ):
        counts[(queue_name, status)] = count
    mine = session.scalars(select(Job).where(Job.owner_id == current_user().id, Job.status == QUEUED).order_by(Job.id))
    yours = [
        {
            "id": job.id,
            "name": job.name,
            "queue": job.queue,
            "position": queue_position(session, job),
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
            }
            for q in QUEUES
        },
        "your_queued_jobs": yours,
    }


def _worker_view(worker) -> dict:
    return {
        "name": worker.name,
        "host": worker.host,
        "concurrency": worker.concurrency,
        "gpu": {"name": worker.gpu_name, "memory_mb": worker.gpu_memory_mb} if worker.gpu_name else None,
        "heartbeat_at": iso(worker.heartbeat_at),
    }
