"""The catalog of algorithms, the queue overview and the health check."""
from __future__ import annotations

from flask import Blueprint, Flask
from sqlalchemy import func, select

from service import worker_registry
from service.algorithms import catalog
from service.nets.layers import catalog as layers_catalog
from service.network_specs import APIS, presets_catalog, training_catalog
from service.optimize_specs import functions_catalog
from service.search_specs import search_catalog
from service.strategies import strategies_catalog
from service.api.auth import current_user, db_session
from service.api.serialize import iso, queue_position
from service.broker import QUEUES
from service.jobs import QUEUED, RUNNING
from service.tables import Job

bp = Blueprint("catalog", __name__)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.get("/healthz")
def healthz():
    return {"status": "ok"}


@bp.get("/api/v1/algorithms")
def algorithms():
    return {
        "algorithms": catalog(),
        "networks": {
            "frameworks": {name: list(apis) for name, apis in APIS.items()},
            "presets": presets_catalog(),
            "layers": layers_catalog(),
            "training": training_catalog(),
        },
        "optimize": {"strategies": strategies_catalog(), "functions": functions_catalog()},
        "search": search_catalog(),
    }


@bp.get("/api/v1/queue")
def queue():
    session = db_session()
    workers = worker_registry.online(session)
    counts = dict.fromkeys(((q, s) for q in QUEUES for s in (QUEUED, RUNNING)), 0)
    for queue_name, status, count in session.execute(
            select(Job.queue, Job.status, func.count()).where(Job.status.in_((QUEUED, RUNNING)))
            .group_by(Job.queue, Job.status)):
        counts[(queue_name, status)] = count
    mine = session.scalars(select(Job).where(Job.owner_id == current_user().id, Job.status == QUEUED)
                           .order_by(Job.id))
    yours = [{"id": job.id, "name": job.name, "queue": job.queue, "position": queue_position(session, job),
              "created_at": iso(job.created_at)} for job in mine]
    return {
        "queues": {q: {"queued": counts[(q, QUEUED)], "running": counts[(q, RUNNING)],
                       "workers": [_worker_view(w) for w in workers if q in w.queues.split(",")]}
                   for q in QUEUES},
        "your_queued_jobs": yours,
    }


def _worker_view(worker) -> dict:
    return {"name": worker.name, "host": worker.host, "concurrency": worker.concurrency,
            "gpu": {"name": worker.gpu_name, "memory_mb": worker.gpu_memory_mb} if worker.gpu_name else None,
            "heartbeat_at": iso(worker.heartbeat_at)}
