"""Where a trainer's reports go: the job's events and progress in the database."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from service.core.db import Database
from service.core.orm import Job, JobEvent
from service.jobs import lifecycle
from workers.trainers.base import Cancelled
from workers.watch import JobWatch

MAX_LOG_BYTES = 20 * 1024 * 1024  # of a job's own output, in its log
PROGRESS_EVERY_S = 0.25


class DbReporter:
    """Writes a trainer's events and progress to the job's rows; raises Cancelled once asked to stop."""

    def __init__(
        self, db: Database, job_id: str, job_log: logging.Logger, checkpoint_dir: Path | None, watch: JobWatch
    ):
        self.db, self.job_id, self.log, self.checkpoint_dir, self.watch = db, job_id, job_log, checkpoint_dir, watch
        self._epochs_seen: set[int] | None = None
        self._logged = 0
        self._pending: dict[str, Any] = {}  # progress not written yet
        self._progress_at = 0.0

    def event(self, type_: str, data: dict[str, Any]) -> None:
        self._check()
        with self.db.session() as session:
            if type_ == "epoch" and self._already_reported(session, data["epoch"]):
                return
            lifecycle.add_event(session, self.job_id, type_, data)
            self._write_progress(session)  # what progress waits goes in the same transaction
        if type_ == "log":
            self.log.info("%s", data.get("message", data))

    def progress(self, **fields: Any) -> None:
        """Progress is written at most every PROGRESS_EVERY_S, or with the next event, so a short
        job's many steps (a fold, a trial) do not each cost a transaction; metrics at once."""
        self._check()
        self._pending.update(fields)
        if "metrics" in fields or time.monotonic() - self._progress_at >= PROGRESS_EVERY_S:
            self.flush()

    def flush(self) -> None:
        """Write the progress still waiting (the runner calls it before the job's outcome)."""
        if self._pending:
            with self.db.session() as session:
                self._write_progress(session)

    def _write_progress(self, session) -> None:
        if not self._pending:
            return
        fields, self._pending = self._pending, {}
        self._progress_at = time.monotonic()
        job = session.get(Job, self.job_id)
        metrics = fields.pop("metrics", None)
        if metrics is not None:
            job.metrics = metrics
        job.progress = {**(job.progress or {}), **fields}

    def output(self, stream: str, line: str) -> None:
        """A line the job's program printed goes to the job's log (bounded: MAX_LOG_BYTES a job)."""
        if self._logged > MAX_LOG_BYTES:
            return
        self._logged += len(line) + 1
        if self._logged > MAX_LOG_BYTES:
            self.log.warning("the job printed more than %d bytes; the rest is not in its log", MAX_LOG_BYTES)
            return
        self.log.log(logging.WARNING if stream == "stderr" else logging.INFO, "%s", line)

    def stop_requested(self) -> bool:
        return self.watch.stop.is_set()

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
