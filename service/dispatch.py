"""The dispatcher: the database holds the queue, and jobs go to Celery only when a worker
slot is free, the next one chosen by fair share (DESIGN.md decisions 5 and 6).

Each round: re-queue or fail jobs whose worker stopped heartbeating, re-send jobs the
broker lost, then fill each queue's free slots. A search job takes no slot: the search
driver (service/search.py) submits its trials, which are scheduled like any job. Fair share orders waiting jobs by their
owner's recent usage (device-seconds, each second's weight halving every half-life, as
SLURM's fair-share factor decays; each job already placed ahead counts as a minute of
use, so owners take turns), then priority, then age; per-user running limits
skip an owner who has enough running. A round runs under a lock row, so any number of
dispatchers can run without releasing a job twice.
"""
from __future__ import annotations

import heapq
import logging
import math
import socket
from collections import Counter, defaultdict
from datetime import datetime, timedelta

from celery import Celery
from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service import jobs, worker_registry
from service.broker import QUEUES, send_job
from service.config import Settings
from service.jobs import QUEUED, RUNNING
from service.search import SEARCH, SearchDriver
from service.limits import effective_limits
from service.tables import DispatchLock, Job, User, utcnow

log = logging.getLogger("labtrain.dispatcher")


def usage_by_owner(session: Session, queue: str, half_life_s: float, now: datetime) -> dict[str, float]:
    """Each owner's decayed device-seconds on `queue`: a second used t seconds ago counts 0.5**(t / half-life)."""
    horizon = now - timedelta(seconds=half_life_s * 10)  # older use weighs under 0.1 %
    # A re-queued job keeps the start of its lost attempt but runs nothing now: left out until
    # it starts again (which sets a new start).
    rows = session.execute(select(Job.owner_id, Job.started_at, Job.finished_at).where(
        Job.queue == queue, Job.family != SEARCH, Job.status != QUEUED, Job.started_at.is_not(None),
        or_(Job.finished_at.is_(None), Job.finished_at >= horizon)))
    decay = math.log(2) / half_life_s
    usage: dict[str, float] = defaultdict(float)
    for owner, started, finished in rows:
        end = finished or now
        # The integral of exp(-decay * age) over the job's run, ages measured from now.
        age_end, age_start = (now - end).total_seconds(), (now - started).total_seconds()
        usage[owner] += (math.exp(-decay * max(age_end, 0)) - math.exp(-decay * max(age_start, 0))) / decay
    return usage


# Each job placed ahead in the order counts as this much use for its owner, so that owners
# with equal use take turns instead of one owner's fifty jobs all going first.
PENDING_CHARGE_S = 60.0


def waiting_in_order(session: Session, queue: str, settings: Settings, now: datetime | None = None) -> list[Job]:
    """Queued jobs not yet sent to the broker, in the order fair share would send them:
    repeatedly the next job (by priority, then age) of the owner with the least use."""
    now = now or utcnow()
    waiting = session.scalars(select(Job).where(Job.queue == queue, Job.status == QUEUED, Job.family != SEARCH,
                                                Job.released_at.is_(None)))
    mine: dict[str, list[Job]] = defaultdict(list)
    for job in sorted(waiting, key=lambda job: (-job.priority, job.id)):
        mine[job.owner_id].append(job)
    usage = usage_by_owner(session, queue, settings.usage_half_life_s, now)

    def turn(owner: str) -> tuple:
        head = mine[owner][0]
        return usage.get(owner, 0.0), -head.priority, head.id, owner

    heap = [turn(owner) for owner in mine]
    heapq.heapify(heap)
    order = []
    while heap:
        owner = heapq.heappop(heap)[-1]
        order.append(mine[owner].pop(0))
        usage[owner] = usage.get(owner, 0.0) + PENDING_CHARGE_S
        if mine[owner]:
            heapq.heappush(heap, turn(owner))
    return order


def queue_order(session: Session, queue: str, settings: Settings) -> list[str]:
    """Ids of every queued job of `queue` in the order they will start: already sent first."""
    sent = session.scalars(select(Job.id).where(Job.queue == queue, Job.status == QUEUED,
                                                Job.released_at.is_not(None)).order_by(Job.released_at, Job.id))
    return list(sent) + [job.id for job in waiting_in_order(session, queue, settings)]


class Dispatcher:
    def __init__(self, settings: Settings, celery: Celery, name: str | None = None):
        self.settings, self.celery = settings, celery
        self.name = name or f"dispatcher@{socket.gethostname()}"

    def run_round(self, session: Session) -> list[str]:
        """One round under the lock; returns the ids of the jobs released."""
        self._lock(session)
        now = utcnow()
        self._reap(session, now)
        self._resend(session, now)
        released = []
        for queue in QUEUES:
            released += self._fill(session, queue, now)
        return released

    def _lock(self, session: Session) -> None:
        # The UPDATE holds the row (PostgreSQL) or the database (SQLite) until commit.
        take = update(DispatchLock).where(DispatchLock.id == 1).values(holder=self.name, taken_at=utcnow())
        if session.execute(take).rowcount:
            return
        try:  # the migration made the row; recreate it if it was deleted
            with session.begin_nested():
                session.execute(insert(DispatchLock).values(id=1, holder=self.name, taken_at=utcnow()))
        except IntegrityError:  # another dispatcher made it first
            session.execute(take)

    def _reap(self, session: Session, now: datetime) -> None:
        """Running jobs whose heartbeat stopped lost their worker: run them again, or fail them."""
        stale = now - timedelta(seconds=self.settings.job_heartbeat_timeout_s)
        for job in session.scalars(select(Job).where(Job.status == RUNNING, Job.family != SEARCH,
                                                     Job.heartbeat_at < stale)):
            if job.attempt < job.max_attempts:
                log.warning("job %s lost its worker %s; re-queueing (attempt %d of %d done)",
                            job.id, job.worker, job.attempt, job.max_attempts)
                jobs.requeue(session, job, f"worker {job.worker} lost")
            else:
                log.warning("job %s lost its worker %s after %d attempts; failing it", job.id, job.worker, job.attempt)
                jobs.finish(session, job.id, jobs.FAILED, attempt=job.attempt, error_code="worker_lost",
                            error=f"the job's worker stopped responding in each of its {job.attempt} attempts "
                                  f"(last on {job.worker})")

    def _resend(self, session: Session, now: datetime) -> None:
        """Jobs sent but never taken: the broker may have lost them. A duplicate is dropped by the claim."""
        overdue = now - timedelta(seconds=self.settings.resend_after_s)
        for job in session.scalars(select(Job).where(Job.status == QUEUED, Job.released_at < overdue)):
            if self._send(job):
                job.released_at = now

    def _fill(self, session: Session, queue: str, now: datetime) -> list[str]:
        capacity = sum(w.concurrency for w in worker_registry.online(session) if queue in w.queues.split(","))
        busy = session.execute(select(Job.owner_id).where(Job.queue == queue, Job.family != SEARCH, or_(
            Job.status == RUNNING, (Job.status == QUEUED) & Job.released_at.is_not(None)))).scalars().all()
        free = capacity - len(busy)
        if free <= 0:
            return []
        per_owner = Counter(busy)
        limits: dict[str, int] = {}
        released = []
        for job in waiting_in_order(session, queue, self.settings, now):
            if free <= 0:
                break
            if job.owner_id not in limits:
                owner = session.get(User, job.owner_id)
                limits[job.owner_id] = effective_limits(self.settings, owner)[f"max_running_{queue}"]
            if per_owner[job.owner_id] >= limits[job.owner_id]:
                continue
            if not self._send(job):
                break  # the broker is down: try again next round
            job.released_at = now
            per_owner[job.owner_id] += 1
            free -= 1
            released.append(job.id)
        return released

    def _send(self, job: Job) -> bool:
        try:
            send_job(self.celery, job.id, job.queue)
            return True
        except Exception:
            log.warning("the broker did not take job %s; it stays queued", job.id, exc_info=True)
            return False


def round_needed(session: Session, settings: Settings) -> bool:
    """A cheap look: is anything waiting, overdue at the broker, or running without a heartbeat?"""
    now = utcnow()
    overdue = now - timedelta(seconds=settings.resend_after_s)
    stale = now - timedelta(seconds=settings.job_heartbeat_timeout_s)
    return session.scalar(select(Job.id).where(Job.family != SEARCH, or_(
        (Job.status == QUEUED) & (Job.released_at.is_(None) | (Job.released_at < overdue)),
        (Job.status == RUNNING) & (Job.heartbeat_at < stale))).limit(1)) is not None


def run_forever(settings: Settings, stop) -> None:
    """The dispatcher process: a round whenever one is needed, until `stop` (an Event) is set."""
    from service.broker import make_celery
    from service.db import Database

    db = Database(settings.database_url)
    dispatcher = Dispatcher(settings, make_celery(settings))
    # Searches are driven here too: their trials are jobs this dispatcher then schedules.
    searches = SearchDriver(settings, db, dispatcher.name)
    log.info("%s dispatching every %.2f s", dispatcher.name, settings.dispatch_interval_s)
    while not stop.is_set():
        try:
            searches.run_pending()
            with db.session() as session:
                needed = round_needed(session, settings)
            if needed:
                with db.session() as session:
                    released = dispatcher.run_round(session)
                if released:
                    log.info("released %d job(s): %s", len(released), ", ".join(released))
        except Exception:  # the database may be restarting: keep going
            log.exception("dispatch round failed")
            stop.wait(1.0)
        stop.wait(settings.dispatch_interval_s)
    db.dispose()
