"""A CPU worker's pool process, its job ended, refills the slot it freed: it takes the next job as
a dispatcher's round would (service/dispatcher.py `refill`: fair share, running limits and
budgets, under the round's lock) and runs it at once. Between two jobs of a busy queue there is
then no broker message, no Celery hand-off and no dispatcher wake-up; the dispatcher still
releases into slots that were idle, reaps, resends and preempts.

A job taken this way is released to this worker and claimed by it in one transaction (a commit
less a job than a release and a claim of their own): it is never released to a process that has
not claimed it, and a job the process dies running is reaped by its heartbeat, as any. The jobs
one Celery task runs in turn are bounded by time, half the broker's visibility timeout (its first
message is acknowledged when the task ends), and end when the worker is stopping: it leaves the
registry first (celery_app), so a refill finds it offline.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy.orm import Session

from service.core import wakeups
from service.core.config import Settings
from service.core.db import Database
from service.dispatcher import Dispatcher
from workers.runner import JobRunner

log = logging.getLogger("labtrain.worker")


class Refill:
    def __init__(self, settings: Settings, worker_name: str, queues: list[str]):
        """`queues`: refillable ones (service/dispatcher.py `refillable`)."""
        self.worker_name, self.queues = worker_name, queues
        self.dispatcher = Dispatcher(settings, None, name=worker_name, slurm=False)
        self.longest_s = settings.visibility_timeout / 2

    def run_following(self, runner: JobRunner) -> None:
        """Runs the jobs this process takes next, one at a time, each taken as the one before it
        ends, in the transaction that claims it."""
        until = time.monotonic() + self.longest_s
        took = False  # a take after a take looks in its own transaction: a busy queue's jobs skip the look
        try:
            while self.queues and time.monotonic() < until and (took or self._something_waits(runner.db)):
                if not runner.run_taken(self._take):
                    break
                took = True
        finally:
            if took:  # the dispatcher left this slot to it (Dispatcher.settled_by), and it is free now
                self._ring(runner.db)

    def _something_waits(self, db: Database) -> bool:
        """A look outside a transaction first, where this process took no job for its slot last: a
        job at a time finds nothing waiting, and then costs one statement, not a transaction's
        three, while its client's stream is being sent. After a take, the next is likely there."""
        try:
            with db.reads() as session:
                return self.dispatcher.something_waits(session, self.queues)
        except Exception:  # the database may be restarting: the dispatcher fills the slot
            log.warning(
                "could not look for a job for the slot of %s; the dispatcher will", self.worker_name, exc_info=True
            )
            return False

    def _ring(self, db: Database) -> None:
        """Tell the dispatcher this slot is free: it takes what this process could not (a job its
        owner's limit holds, or one that came after the take looked) or the next to come."""
        try:
            with db.each_statement_alone() as session:
                wakeups.notify(session, wakeups.WORKERS, {"worker": self.worker_name, "slot_free": True})
        except Exception:  # the database may be restarting: the dispatcher's timer looks
            log.warning("could not tell the dispatcher the slot of %s is free", self.worker_name, exc_info=True)

    def _take(self, session: Session) -> str | None:
        try:
            job_id = self.dispatcher.refill(session, self.worker_name, self.queues, looked=True)
        except Exception:  # the database may be restarting: the dispatcher fills the slot
            session.rollback()
            log.warning("could not refill the slot of %s; the dispatcher will", self.worker_name, exc_info=True)
            return None
        if job_id:
            log.info("took job %s for the slot its last job freed", job_id)
        return job_id
