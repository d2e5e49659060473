"""A CPU worker's pool process, its job ended, refills the slot it freed: it takes the next job as
a dispatcher's round would (service/dispatcher.py `refill`: fair share, running limits and
budgets, under the round's lock) and runs it at once. Between two jobs of a busy queue there is
then no broker message, no Celery hand-off and no dispatcher wake-up; the dispatcher still
releases into slots that were idle, reaps, resends and preempts.

A job taken this way is released to this worker, as a sent one is: should the process die before
its claim, the dispatcher sends it again after `resend_after_s`, and a job it dies running is
reaped by its heartbeat, as any. The jobs one Celery task runs in turn are bounded by time, half
the broker's visibility timeout (its first message is acknowledged when the task ends), and end
when the worker is stopping: it leaves the registry first (celery_app), so a refill finds it
offline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from service.core.config import Settings
from service.core.db import Database
from service.dispatcher import Dispatcher

log = logging.getLogger("labtrain.worker")


class Refill:
    def __init__(self, settings: Settings, db: Database, worker_name: str, queues: list[str]):
        """`queues`: refillable ones (service/dispatcher.py `refillable`)."""
        self.db, self.worker_name, self.queues = db, worker_name, queues
        self.dispatcher = Dispatcher(settings, None, name=worker_name, slurm=False)
        self.longest_s = settings.visibility_timeout / 2

    def next_jobs(self) -> Iterator[str]:
        """The jobs this process runs next, one at a time, taken as each before it ends."""
        until = time.monotonic() + self.longest_s
        while self.queues and time.monotonic() < until and (job_id := self._take()):
            yield job_id

    def _take(self) -> str | None:
        try:
            with self.db.session() as session:
                job_id = self.dispatcher.refill(session, self.worker_name, self.queues)
        except Exception:  # the database may be restarting: the dispatcher fills the slot
            log.warning("could not refill the slot of %s; the dispatcher will", self.worker_name, exc_info=True)
            return None
        if job_id:
            log.info("took job %s for the slot its last job freed", job_id)
        return job_id
