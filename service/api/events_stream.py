"""A job's events as server-sent events (`Accept: text/event-stream` on the events route).

The stream polls the database with a short session each time and holds no connection or
transaction while it sleeps, so many open streams cost no database connections. Gunicorn
runs `gthread` workers: an open stream occupies one of a worker's threads, so each stream
ends after `MAX_STREAM_S`; an EventSource-style client reconnects with `Last-Event-ID`
and carries on where it stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from flask import Response
from sqlalchemy import select

from service.api.serialize import event_view
from service.core.db import Database
from service.core.orm import Job, JobEvent
from service.jobs.lifecycle import FINISHED

POLL_S = 0.4  # how often the database is asked for new events
HEARTBEAT_S = 15.0  # a comment line this often keeps proxies from closing an idle stream
MAX_STREAM_S = 300.0  # bounds how long one stream holds a server thread
RETRY_MS = 2000  # how long the client waits before reconnecting
BATCH = 500


def job_event_stream(db: Database, job_id: str, after: int) -> Response:
    response = Response(_job_events(db, job_id, after), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx would otherwise buffer the stream
    return response


def format_event(view: dict[str, Any]) -> str:
    return f"id: {view['seq']}\nevent: {view['type']}\ndata: {json.dumps(view, separators=(',', ':'))}\n\n"


def _job_events(db: Database, job_id: str, after: int) -> Iterator[str]:
    started = last_write = time.monotonic()
    yield f"retry: {RETRY_MS}\n\n"
    while True:
        with db.sessions() as session:
            # The status is read before the events: once it says finished, the events that
            # read finds include the job's last ones.
            status = session.scalar(select(Job.status).where(Job.id == job_id))
            rows = session.scalars(
                select(JobEvent)
                .where(JobEvent.job_id == job_id, JobEvent.seq > after)
                .order_by(JobEvent.seq)
                .limit(BATCH)
            ).all()
            views = [event_view(row) for row in rows]
        if views:
            after = views[-1]["seq"]
            last_write = time.monotonic()
            yield "".join(format_event(view) for view in views)
        if len(views) == BATCH:
            continue  # more are waiting: send them before sleeping
        if status is None or status in FINISHED:
            return
        if time.monotonic() - started >= MAX_STREAM_S:
            return
        if time.monotonic() - last_write >= HEARTBEAT_S:
            last_write = time.monotonic()
            yield ": heartbeat\n\n"
        time.sleep(POLL_S)
