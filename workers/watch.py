"""The watch beside a running job, in the job's own process: heartbeat, cancel, time limit."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

from sqlalchemy import select, update

from service.core import logs
from service.core.db import Database
from service.core.orm import Job, utcnow
from service.jobs import lifecycle

log = logging.getLogger("labtrain.worker")

WATCH_SECONDS = 0.5  # how often it looks for a cancel (a read)
HEARTBEAT_WRITE_SECONDS = 5.0  # how often it renews the heartbeat (a write), at most
CANCELLED, OVERDUE, SUPERSEDED = "cancelled", "time_limit_exceeded", "superseded"


class JobWatch:
    """Runs beside the training in the job's own process.

    Twice a second it looks for a reason to stop: a cancel, the time limit, or another
    attempt having taken the job over; every few seconds it renews the job's
    heartbeat, so a lost worker is noticed (a write is dearer than a look, and the training
    shares the machine with it). Trainers stop cooperatively within a batch; a job that has not stopped after
    the grace period is recorded and its process killed, so the device is free at once.
    """

    def __init__(
        self,
        db: Database,
        job_id: str,
        attempt: int,
        time_limit_s: int | None,
        grace_s: float,
        heartbeat_timeout_s: float = 60.0,
    ):
        self.db, self.job_id, self.attempt = db, job_id, attempt
        # Several beats within the timeout after which the dispatcher takes the job as lost.
        self.beat_s = min(HEARTBEAT_WRITE_SECONDS, heartbeat_timeout_s / 6)
        self.time_limit_s, self.grace_s = time_limit_s, grace_s
        self.reason: str | None = None
        self.finishing = False  # set before the runner records the outcome itself
        self.preempting = False
        self.stop = threading.Event()
        self._done = threading.Event()
        self._stopping_since = 0.0
        self._beat_at = time.monotonic()  # the claim wrote the first heartbeat
        self._thread = threading.Thread(target=self._run, name=f"watch-{job_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        logs.JOB_ID.set(self.job_id)  # a thread starts with a fresh context
        while not self._done.wait(WATCH_SECONDS):
            try:
                self._look()
            except Exception:  # a database hiccup must not kill the job; look again next time
                log.warning("could not check job %s", self.job_id, exc_info=True)
            overdue = self.reason == SUPERSEDED or time.monotonic() - self._stopping_since > self.grace_s
            if self.reason and not self.finishing and overdue:
                self._kill()

    def _look(self) -> None:
        with self.db.session() as session:
            row = session.execute(
                select(Job.status, Job.attempt, Job.cancel_requested, Job.started_at, Job.preempt_requested).where(
                    Job.id == self.job_id
                )
            ).one()
            if row.status != lifecycle.RUNNING or row.attempt != self.attempt:
                if not self.finishing:
                    self._set_reason(SUPERSEDED)
                return
            now = utcnow()
            if time.monotonic() - self._beat_at >= self.beat_s:
                self._beat_at = time.monotonic()
                session.execute(
                    update(Job).where(Job.id == self.job_id, Job.attempt == self.attempt).values(heartbeat_at=now)
                )
        self.preempting = bool(row.preempt_requested)  # asked to yield: the trainer stops at an epoch end
        if row.cancel_requested:
            self._set_reason(CANCELLED)
        elif self.time_limit_s and (now - row.started_at).total_seconds() > self.time_limit_s:
            self._set_reason(OVERDUE)

    def _set_reason(self, reason: str) -> None:
        if self.reason is None:
            self.reason, self._stopping_since = reason, time.monotonic()
            self.stop.set()

    def _kill(self) -> None:
        if self.reason != SUPERSEDED:
            status, fields = outcome(self.reason, self.time_limit_s)
            with self.db.session() as session:
                lifecycle.finish(session, self.job_id, status, attempt=self.attempt, **fields)
        log.error("job %s did not stop within %.0f s (%s); killing its process", self.job_id, self.grace_s, self.reason)
        os.kill(os.getpid(), signal.SIGKILL)


def outcome(reason: str, time_limit_s: int | None) -> tuple[str, dict[str, Any]]:
    """The final status and fields of a job stopped for `reason`."""
    if reason == OVERDUE:
        return lifecycle.FAILED, {
            "error_code": "time_limit_exceeded",
            "error": f"the job ran longer than its time limit of {time_limit_s} s",
        }
    return lifecycle.CANCELLED, {}
