"""Where a trainer's reports go: the job's events and progress in the database. What the job
runs with (its checkpoints, its GPU share, the stop and yield checks) is its Allotment
(workers/trainers/base.py), which the runner makes beside this."""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import select

from service.core.db import Database
from service.core.orm import Job, JobEvent, utcnow
from service.jobs import lifecycle
from workers.trainers.base import Cancelled
from workers.watch import JobWatch

WRITE_EVERY_S = 0.25  # log events and progress wait at most this long to be written


class DbReporter:
    """Writes a trainer's events and progress to the job's rows; raises Cancelled once asked to stop."""

    def __init__(
        self,
        db: Database,
        job_id: str,
        job_log: logging.Logger,
        watch: JobWatch,
        progress: dict[str, Any] | None = None,
    ):
        self.db, self.job_id, self.log, self.watch = db, job_id, job_log, watch
        self._epochs_seen: set[int] | None = None
        self._points_seen: set[tuple[str, Any]] | None = None  # (key, step) of the job's metrics events
        # The job's progress as written (the claim returned an earlier attempt's): what comes is
        # added to it and written whole, without reading the row again. None: read it first.
        self._progress = progress
        self._pending: dict[str, Any] = {}  # progress not written yet
        self._logs: list[lifecycle.Event] = []  # log and metrics events not written yet
        # From the start: a job's first lines wait like the others, so a short job's (a search's
        # trial) go with its outcome, and a long one's are on the live view within WRITE_EVERY_S.
        self._written_at = time.monotonic()

    # A short job's many steps (a fold, a trial) would each cost a transaction: log events and
    # progress (metrics included) wait up to WRITE_EVERY_S and go together, with the next other
    # event, or with the job's outcome; other events (an epoch, a trial) are written at once.
    def event(self, type_: str, data: dict[str, Any]) -> None:
        self._check()
        if type_ == "log":
            self.log.info("%s", data.get("message", data))
            self._logs.append((type_, data, utcnow()))
            self.write_if_due()
            return
        if type_ == "metrics":  # a TensorBoard file's steps come by the thousand: they wait like log lines
            fresh = self._new_points(data)
            if fresh is not None:
                self._logs.append((type_, fresh, utcnow()))
                self.write_if_due()
            return
        with self.db.session() as session:
            if type_ == "epoch" and self._already_reported(session, data["epoch"]):
                return
            events, values = self.take(session)  # the log lines before it keep their place
            lifecycle.add_events(session, self.job_id, [*events, (type_, data, utcnow())], **values)

    def progress(self, **fields: Any) -> None:
        self._check()
        self._pending.update(fields)  # metrics too: a script may report thousands a second
        self.write_if_due()

    def flush(self) -> None:
        """Write what waits in a transaction of its own."""
        if self._pending or self._logs:
            with self.db.session() as session:
                self.write_pending(session)

    def write_pending(self, session) -> None:
        """Write what waits in the caller's transaction."""
        events, values = self.take(session)
        if events or values:
            lifecycle.add_events(session, self.job_id, events, **values)

    def take(self, session) -> tuple[list[lifecycle.Event], dict[str, Any]]:
        """What waits, taken: the events to add and the job row's values (progress, metrics),
        for the caller to write in its transaction (the runner's, with the job's outcome)."""
        self._written_at = time.monotonic()
        events, self._logs = self._logs, []
        if not self._pending:
            return events, {}
        fields, self._pending = self._pending, {}
        values: dict[str, Any] = {}
        metrics = fields.pop("metrics", None)
        if metrics is not None:
            values["metrics"] = metrics
        if self._progress is None:  # a reporter not given the claimed row's progress
            self._progress = session.get(Job, self.job_id).progress or {}
        self._progress = {**self._progress, **fields}
        values["progress"] = self._progress
        return events, values

    def write_if_due(self) -> None:
        """Write what waits once it waited WRITE_EVERY_S (also while a trainer only polls its
        stop check: a long notebook cell after its `cell i/N` reports nothing new)."""
        if (self._logs or self._pending) and time.monotonic() - self._written_at >= WRITE_EVERY_S:
            self.flush()

    def output(self, stream: str, line: str) -> None:
        """A line the job's program printed goes to the job's log (the sandbox bounds what a
        program sends, every channel together: service/sandbox/box.py, MAX_OUTPUT_BYTES)."""
        self.log.log(logging.WARNING if stream == "stderr" else logging.INFO, "%s", line)

    def _new_points(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """A metrics event ({"step", "source", key: value ...}) without the points (key, step)
        the job has already: a resumed attempt repeats some, and the first stays. None when no
        point is new."""
        if self._points_seen is None:
            with self.db.session() as session:
                rows = session.scalars(
                    select(JobEvent.data).where(JobEvent.job_id == self.job_id, JobEvent.type == "metrics")
                )
                self._points_seen = {
                    (key, row.get("step")) for row in rows for key in row if key not in lifecycle.METRICS_EVENT_FIELDS
                }
        step = data.get("step")
        fresh = {
            key: value
            for key, value in data.items()
            if key not in lifecycle.METRICS_EVENT_FIELDS and (key, step) not in self._points_seen
        }
        if not fresh:
            return None
        self._points_seen.update((key, step) for key in fresh)
        return {key: data[key] for key in lifecycle.METRICS_EVENT_FIELDS if key in data} | fresh

    def _already_reported(self, session, epoch: int) -> bool:
        # A resumed attempt may repeat the epoch after the last checkpoint: report each epoch once.
        if self._epochs_seen is None:
            rows = session.scalars(
                select(JobEvent.data).where(JobEvent.job_id == self.job_id, JobEvent.type == "epoch")
            )
            self._epochs_seen = {row.get("epoch") for row in rows}
        if epoch in self._epochs_seen:
            return True
        self._epochs_seen.add(epoch)
        return False

    def _check(self) -> None:
        if self.watch.stop.is_set():
            raise Cancelled()
