"""The Celery app's configuration, shared by the API (which sends) and the workers (which run).

The message carries only the job id (DESIGN.md decision 1); the web side sends the task
by name and never imports the task code.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from service.core import queues as queue_catalog
from service.core import sqlite_broker
from service.core.config import Settings

RUN_JOB_TASK = "labtrain.run_job"
QUEUES = queue_catalog.BUILTIN  # every deployment's; LABTRAIN_QUEUES may add named ones (celery_queues)


def celery_queues(settings: Settings) -> list[str]:
    """The queues Celery workers serve: cpu and gpu, and the named ones whose backend is celery."""
    found = queue_catalog.catalog(settings).values()
    return [*QUEUES, *(q.name for q in found if q.backend == "celery" and q.name not in QUEUES)]


def make_celery(settings: Settings) -> Celery:
    if settings.embedded_broker:
        _tune_embedded_transport(settings)
    # On a SQLite file the broker's own transport, woken by a doorbell (service/core/sqlite_broker.py).
    broker = sqlite_broker.broker_url(settings.broker_url) if settings.embedded_broker else settings.broker_url
    app = Celery("labtrain", broker=broker, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_queues=[Queue(name) for name in celery_queues(settings)],
        task_default_queue="cpu",
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        broker_transport_options=(
            {} if settings.embedded_broker else {"visibility_timeout": settings.visibility_timeout}
        ),
    )
    return app


def make_request_sender(settings: Settings) -> Celery:
    """Celery for sending from a request (the API's Dispatcher.send_arrivals, with send_job's
    `retry` False): where Redis does not answer, a send fails at once instead of after kombu's
    connection retries (about 6 s), and the dispatcher's round sends the job instead."""
    app = make_celery(settings)
    if not settings.embedded_broker:  # the embedded transport hands its options to create_engine
        app.conf.broker_transport_options = {**app.conf.broker_transport_options, "max_retries": 1}
    return app


def _tune_embedded_transport(settings: Settings) -> None:
    # kombu hands this transport's options to create_engine, so its polling interval
    # can only be set on the class (it polls once a second by default). On a SQLite file the
    # doorbell wakes the consumer, which then looks every embedded_safety_s besides.
    from kombu.transport import sqlalchemy as sqla_transport

    sqla_transport.Transport.polling_interval = settings.embedded_poll_interval
    sqlite_broker.configure(settings.embedded_safety_s, settings.embedded_poll_interval)


def worker_queue(worker_name: str) -> str:
    """The queue only this worker reads: a GPU job goes to the worker whose GPU it was packed onto."""
    return f"worker.{worker_name}"


def send_job(app: Celery, job_id: str, queue: str, retry: bool = True) -> None:
    """`retry`: False to fail at once where the broker refuses (Celery retries a publish for about
    half a second)."""
    app.send_task(RUN_JOB_TASK, args=[job_id], queue=queue, retry=retry)


def declare_queues(app: Celery) -> None:
    """Create the queues once, before API and workers start using the broker at the same time."""
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=3)
        channel = connection.default_channel
        for queue in app.conf.task_queues:
            queue(channel).declare()
