"""What the event streams send, read from the database one step at a time.

A feed says what an open stream has not sent yet: `JobFeed` a job's events in order (its
`seq` is the SSE id, so a client resumes with Last-Event-ID), `JobsFeed` the state of a
user's jobs each time one changes (the dashboard's job list). Each `read` takes a short
session of its own, so an open stream holds no connection or transaction between reads.

Two loops drive feeds: the API server's (service/api/streams.py), woken by the stream hub
with no thread held while it waits, and `poll_stream` here for a plain WSGI server (Flask's
test client, `flask run`), which holds its thread and asks every POLL_S.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

from flask import Response
from sqlalchemy import Select, and_, bindparam, or_, select

from service.api.serialize import event_view, iso
from service.api.stream_hub import ALL, job_key, user_key
from service.core.db import Database
from service.core.orm import Job, JobEvent
from service.courses.access import visible_jobs
from service.jobs.lifecycle import FINISHED

POLL_S = 0.4  # how often a plain WSGI server's stream asks the database
MAX_POLL_STREAM_S = 300.0  # a plain WSGI server's stream holds a thread: it ends after this
HEARTBEAT_S = 15.0  # a comment line this often keeps proxies from closing an idle stream
RETRY_MS = 2000  # how long the client waits before reconnecting
BATCH = 500
HEARTBEAT = ": heartbeat\n\n"
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # nginx would buffer it


class Feed(Protocol):
    keys: tuple[str, ...]  # what wakes it (service/api/stream_hub.py)
    # Whether the last read left more to send at once (a full batch): read again before waiting.
    # Otherwise what comes later wakes the stream, which watches before it reads.
    more: bool

    def read(self, db: Database) -> tuple[str, bool]:
        """What to send now (maybe nothing), and whether the stream is done."""


def format_event(view: dict[str, Any], event: str, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(view, separators=(',', ':'))}\n\n"


@dataclass
class JobFeed:
    job_id: str
    after: int
    more: bool = False

    @property
    def keys(self) -> tuple[str, ...]:
        return (job_key(self.job_id),)

    def read(self, db: Database) -> tuple[str, bool]:
        with db.reads() as session:
            # The status and the events in one statement, which sees them as of one moment: once
            # the status says finished, the events include the job's last ones. No row: no job.
            rows = session.execute(_status_and_events(), {"job_id": self.job_id, "after": self.after}).all()
            status = rows[0][0] if rows else None
            views = [event_view(event) for _status, event in rows if event is not None]
        if views:
            self.after = views[-1]["seq"]
        self.more = len(views) == BATCH
        done = not self.more and (status is None or status in FINISHED)
        return "".join(format_event(view, view["type"], view["seq"]) for view in views), done


@cache
def _status_and_events() -> Select:
    # Every wake-up of every job's stream reads it: built once (building cost more than running it).
    return (
        select(Job.status, JobEvent)
        .outerjoin(JobEvent, and_(JobEvent.job_id == Job.id, JobEvent.seq > bindparam("after")))
        .where(Job.id == bindparam("job_id"))
        .order_by(JobEvent.seq)
        .limit(BATCH)
    )


@dataclass
class JobsFeed:
    """The jobs the user may see (service/courses/access.py) as they change: first every queued or running
    one, then each job again whenever its status, progress or events move on; a job is sent
    one last time when it finishes."""

    user_id: str
    everyone: bool = False
    staff: bool = False  # an instructor or TA somewhere: their courses' jobs too
    sent: dict[str, tuple] = field(default_factory=dict)  # job id -> what was sent of it
    more: bool = False  # each read sends every job that changed since the last

    @property
    def keys(self) -> tuple[str, ...]:
        # Other users' jobs wake no key of this user's: a course's staff wake on every change.
        return (ALL,) if self.everyone or self.staff else (user_key(self.user_id),)

    def read(self, db: Database) -> tuple[str, bool]:
        with db.reads() as session:
            query = select(Job).where(
                or_(Job.status.not_in(FINISHED), Job.id.in_(list(self.sent))), visible_jobs(self.user_id, self.everyone)
            )
            jobs = session.scalars(query.order_by(Job.created_at).limit(BATCH)).all()
            chunks = []
            for job in jobs:
                state = (job.status, job.event_seq, json.dumps(job.progress or {}, sort_keys=True))
                if self.sent.get(job.id) != state:
                    chunks.append(format_event(job_state(job), "job"))
                self.sent[job.id] = state
                if job.status in FINISHED:
                    del self.sent[job.id]  # sent as finished: no need to look at it again
        return "".join(chunks), False


def job_state(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "name": job.name,
        "family": job.family,
        "status": job.status,
        "progress": job.progress or {},
        "last_event": job.event_seq,
        "finished_at": iso(job.finished_at),
    }


def stream_response(body: Any) -> Response:
    return Response(body, mimetype="text/event-stream", headers=STREAM_HEADERS)


def poll_stream(db: Database, feed: Feed) -> Iterator[str]:
    """A feed on a plain WSGI server: it holds the request's thread, so it ends after
    MAX_POLL_STREAM_S (the client reconnects with Last-Event-ID)."""
    started = last_write = time.monotonic()
    yield f"retry: {RETRY_MS}\n\n"
    while True:
        text, done = feed.read(db)
        if text:
            last_write = time.monotonic()
            yield text
        if done or time.monotonic() - started >= MAX_POLL_STREAM_S:
            return
        if feed.more:
            continue  # a full batch: read again before sleeping
        if time.monotonic() - last_write >= HEARTBEAT_S:
            last_write = time.monotonic()
            yield HEARTBEAT
        time.sleep(POLL_S)
