"""The dispatcher: the database holds the queue, and jobs go to Celery only when a worker
slot is free, the next one chosen by fair share (DESIGN.md decisions 5 and 6).

Each round: re-queue or fail jobs whose worker stopped heartbeating, re-send jobs the
broker lost, then fill each queue's free slots in fair-share order
(service/lab/fair_share.py); per-user running limits skip an owner who has enough
running, and a student's course budget holds a job it cannot cover (service/courses/budgets.py:
the job stays queued and says why in `waiting`). A round runs under a lock row, so any number of dispatchers can run without
releasing a job twice. Families whose jobs take no slot (a search) are driven here too,
by the driver their registry record names: their trials are jobs this dispatcher then
schedules. A queue a SLURM partition serves (LABTRAIN_QUEUES) keeps its depth of jobs submitted
there with sbatch, and each round past its poll interval reconciles them with SLURM
(service/slurm/backend.py); with no such queue none of that runs, unless SLURM still holds jobs of
a queue since removed: those are reconciled until they end there. A queue no longer configured
keeps its queued jobs, never sent (one sent before is taken back), until an admin moves or
cancels them (service/lab/removed_queues.py); the log says which queues hold such jobs.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from celery import Celery
from sqlalchemy import CompoundSelect, Select, Update, bindparam, func, insert, select, union_all, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.core import queues as queue_catalog
from service.core import wakeups
from service.core.broker import make_celery, send_job, worker_queue
from service.core.config import Settings
from service.core.db import Database
from service.core.orm import DispatchLock, Job, User, Worker, utcnow
from service.courses.budgets import Ledger
from service.jobs import families, lifecycle
from service.jobs.lifecycle import QUEUED, RUNNING
from service.jobs.limits import running_limit
from service.lab import gpu_packing, preemption, worker_registry
from service.lab.fair_share import waiting_in_order
from service.slurm import queues as slurm_queues
from service.slurm.backend import SlurmBackend

log = logging.getLogger("labtrain.dispatcher")
JOBS = Job.__table__
STOP_CHECK_S = 0.5  # how often a waiting dispatcher looks whether it was asked to stop
ARRIVALS_PAUSE_S = 30.0  # release_arrival leaves every job to the rounds this long after a send failed
# A wake-up's key: the jobs a submit released itself (release_arrival), whose own `queued` is old news.
RELEASED_AT_SUBMIT = "released_at_submit"


class Dispatcher:
    def __init__(self, settings: Settings, celery: Celery | None, name: str | None = None, slurm: bool = True):
        """`celery`: None where nothing is sent (a worker's refill); `slurm`: False where no SLURM
        queue is served (the same, and the API's release_arrival)."""
        self.settings, self.celery = settings, celery
        self._send_failed_at = -ARRIVALS_PAUSE_S  # time.monotonic() when send_arrivals last failed
        self.name = name or f"dispatcher@{socket.gethostname()}"
        catalog = queue_catalog.catalog(settings)
        # Every queue's device (cpu, gpu and the named ones LABTRAIN_QUEUES adds): each round covers each.
        self.devices = {name: q.device for name, q in catalog.items()}
        self._refillable = {name for name, q in catalog.items() if _refills(q)}
        # The queues a SLURM partition serves (LABTRAIN_QUEUES); None: every queue on Celery.
        partitions = slurm_queues.load(settings.queues) if slurm else None
        self.slurm = SlurmBackend(settings, partitions) if partitions else None
        self._removed_seen: dict[str, tuple[int, int]] = {}  # what the log last said of removed queues
        # Where the last look found nothing to do: the queues whose jobs wait with no slot free.
        self._full: set[str] = set()

    def run_round(self, session: Session, online: list[Worker] | None = None) -> list[str]:
        """One round under the lock; returns the ids of the jobs released. The queued and running
        jobs are read once, after the lock; each step below works on those rows. `online`: the
        workers online, where this transaction read them already."""
        online = self._lock_and_look(session, online)
        now = utcnow()
        jobs = _slot_jobs(session)
        reaped = self._reap(session, now, jobs)
        if reaped:
            jobs = _slot_jobs(session)  # requeued or failed by a statement of their own
        self._slurm_for_left_jobs(any(self._left_in_slurm(job) for job in jobs))
        if self.slurm:
            if not self.slurm.reconcile(session, now) and not self.slurm.queues:
                self.slurm = None  # the last job a removed SLURM queue left has ended there
            jobs = _slot_jobs(session)
        self._hold_removed(session, jobs)
        self._resend(session, now, {w.name for w in online}, jobs)
        preempt_before = now - timedelta(seconds=self.settings.preempt_after_s)
        released = []
        for queue, device in self.devices.items():
            # A job requeued this round waits for the next: sent now, before this round commits, a
            # worker's claim would still see it running and drop it (then it waits resend_after_s).
            # The requeue's status event wakes the next round at once.
            mine = [job for job in jobs if job.queue == queue and job.id not in reaped]
            if self._slurm_serves(queue):  # SLURM keeps its own preemption and placement
                released += self._fill(session, queue, now, mine, [], None, self.slurm.free_slots(session, queue))
                continue
            workers = [w for w in online if w.serves(queue)]
            # What each GPU has free, as the jobs placed this round leave it: preemption reads it too.
            gpus = (gpu_packing.gpus(session, workers) if workers else {}) if device == "gpu" else None
            released += self._fill(session, queue, now, mine, workers, gpus)
            # ask_to_yield reads only for a job that waited preempt_after_s: none here, nothing to ask.
            if any(_waiting(job) and job.created_at < preempt_before for job in mine):
                for job_id in preemption.ask_to_yield(session, self.settings, queue, now, gpus):
                    log.info("asked job %s to yield its %s slot to a waiting debug job", job_id, queue)
        return released

    def something_waits(self, session: Session, queues: list[str]) -> bool:
        """Whether a job of `queues` that a refill may take waits for a slot (one statement, which
        a worker asks outside a transaction: a job at a time finds none, at no BEGIN or COMMIT)."""
        queues = [q for q in queues if q in self._refillable]
        return bool(queues) and session.execute(_first_waiting(), {"queues": queues}).first() is not None

    def refill(self, session: Session, worker: str, queues: list[str], looked: bool = False) -> str | None:
        """The slot a job of `worker` just freed takes the next job at once, chosen as a round
        chooses (fair share, running limits, budgets) under the same lock, for that worker and
        without a message: its process claims it in this transaction, which releases it to it
        (lifecycle.claim_job `released`: one UPDATE), and runs it next (workers/refill.py).
        Returns the job's id; None when no slot of its queues is free (a round filled it first),
        nothing there may start, or the worker is no longer online (stopping). CPU queues on
        Celery only (_refills). Reaping, resending and preemption stay the dispatcher's."""
        queues = [q for q in queues if q in self._refillable]
        # Nothing waits (a job at a time): no lock, no round, and nothing for the dispatcher either.
        # `looked`: the caller found something waiting just now (something_waits).
        if not queues or not (looked or self.something_waits(session, queues)):
            return None
        online = self._lock_and_look(session)
        if worker not in {w.name for w in online}:  # stopping: the dispatcher's round fills the slot
            wakeups.notify(session, wakeups.WORKERS, {"worker": worker, "left": True})
            return None
        for queue in queues:
            kept = self._fill_free(session, queue, online, keep_for=worker)
            if kept:
                return kept[0]
        return None

    def release_arrival(self, session: Session, queue: str) -> list[str]:
        """A job just submitted, first in its queue's line, takes a free slot at once: released as a
        round releases (fair share, running limits, budgets, under the round's lock) in the submit's
        own transaction (service/api/jobs.py), so that a lone job does not wait for the dispatcher
        to wake, look and hold a round. Returns the ids released, which `send_arrivals` sends once
        that transaction has committed: a worker's claim must find the new job's row. None where
        every slot is taken: the dispatcher's round then releases them, as before. CPU queues on
        Celery only (_refills); reaping, resending, packing GPUs and preemption stay the
        dispatcher's."""
        # A broker that refused lately would make each submit wait for its connection timeout.
        if queue not in self._refillable or time.monotonic() - self._send_failed_at < ARRIVALS_PAUSE_S:
            return []
        # _fill's write of the job it releases tells the dispatcher it need not look at this
        # arrival (_wait_for_a_change).
        return self._fill_free(session, queue, self._lock_and_look(session), keep_for=_UNSENT)

    def send_arrivals(self, db: Database, queue: str, released: list[str]) -> None:
        """The jobs release_arrival released, sent now that they are committed, at once: a request
        waits on it. One the broker did not take waits for a slot again, and the dispatcher is told
        to look: its round sends it, with the broker's retries. Nothing here fails the request: its
        job is stored, and one left released and unsent is sent again after `resend_after_s`."""
        for job_id in released:
            try:
                send_job(self.celery, job_id, queue, retry=False)
                continue
            except Exception:
                log.warning("the broker did not take job %s; the dispatcher will send it", job_id, exc_info=True)
                self._send_failed_at = time.monotonic()
            try:
                with db.session() as session:
                    session.execute(_unrelease(), {"job": job_id})
                    wakeups.notify(session, wakeups.WORKERS, {"worker": self.name, "unsent": job_id})
            except Exception:  # the database too: the dispatcher's resend finds the job
                log.warning("could not put job %s back in its line", job_id, exc_info=True)

    def _fill_free(self, session: Session, queue: str, online: list[Worker], keep_for: str | None = None) -> list[str]:
        """`queue`'s free slots, if any, take its next jobs (refill and release_arrival)."""
        serving = [w for w in online if w.serves(queue)]
        # The next job is the first of fair share's order, which only the head of each owner's
        # line decides: those are read with the jobs holding a slot, not the whole queue. Where
        # that job may not start (its owner's running limit, a budget), what goes instead
        # depends on the whole line.
        jobs = _slot_jobs(session, queue, _HOLDERS_AND_HEADS)
        busy = [job for job in jobs if not _waiting(job)]
        if sum(w.concurrency for w in serving) <= len(busy):
            return []  # every slot is taken (a round, or another refill, filled it first)
        now = utcnow()
        first = waiting_in_order(session, queue, self.settings, [job for job in jobs if _waiting(job)], now)[:1]
        kept = self._fill(session, queue, now, busy + first, serving, None, keep_for=keep_for)
        if not kept and first:
            kept = self._fill(session, queue, now, _slot_jobs(session, queue), serving, None, keep_for=keep_for)
        return kept

    def round_if_needed(self, session: Session) -> list[str]:
        """A round when one would do anything (round_needed); the ids of the jobs it released."""
        needed, online = self._look(session)
        return self.run_round(session, online) if needed else []

    def settled_by(self, wakes: list[wakeups.Wake]) -> bool:
        """Whether `wakes` leave what the last look found: nothing to do. So where each is a new
        job's arrival (`submitted`, lifecycle.create_job) in a queue whose jobs waited with no slot
        free: an arrival frees none; or the end of a job its worker's process took for its slot
        (`taken`, workers/runner.py): that process takes the next under the round's lock, and where
        it leaves the slot free it says so on the workers' channel (workers/refill.py). Any other
        forgets that look, so the next one looks again. What time alone brings due (a heartbeat
        gone stale, a job overdue at the broker or waiting long enough to preempt) the timer's look
        catches, every `dispatch_safety_s`."""
        if all(wake.payload.get("submitted") in self._full or _left_to_its_refill(wake) for wake in wakes):
            return True
        self._full = set()
        return False

    def round_needed(self, session: Session) -> bool:
        """Whether a round would do anything, without taking the lock: a heartbeat gone stale, a
        job overdue at the broker, or a waiting job that a free slot could take, that a course
        budget may hold (its `waiting` is kept current) or that waited long enough to preempt.
        One statement, and the workers only when something waits for a slot."""
        return self._look(session)[0]

    def _look(self, session: Session) -> tuple[bool, list[Worker] | None]:
        """round_needed's answer, and the workers online where it read them (the round reuses them).
        Where nothing is to do, it keeps the queues whose jobs wait with no slot free (settled_by)."""
        self._full = set()
        if self.slurm and self.slurm.due():  # SLURM's view is polled, never announced
            return True, None
        now, settings = utcnow(), self.settings
        rows = session.execute(
            _queue_counts(),
            {
                "stale": now - timedelta(seconds=settings.job_heartbeat_timeout_s),
                "overdue": now - timedelta(seconds=settings.resend_after_s),
                "preempt_before": now - timedelta(seconds=settings.preempt_after_s),
            },
        ).all()
        if self._slurm_for_left_jobs(any(row[-1] for row in rows if not self._slurm_serves(row[0]))):
            return True, None
        online, full = None, set()
        for queue, busy, waits, held_or_old, lost_or_unsent, sent, _in_slurm in rows:
            if queue not in self.devices:  # no longer configured: its jobs wait for an admin
                # A lost worker, a job sent before to take back, or news for the log.
                if lost_or_unsent or sent or self._removed_seen.get(queue) != (waits, busy):
                    return True, online
                continue
            if lost_or_unsent or held_or_old:
                return True, online
            if not waits:
                continue
            if self._slurm_serves(queue):
                return True, online
            online = worker_registry.online(session) if online is None else online
            workers = [w for w in online if w.serves(queue)]
            if self.devices[queue] == "gpu":
                if workers:  # packing decides: the round looks
                    return True, online
            elif sum(w.concurrency for w in workers) > busy:
                return True, online
            full.add(queue)
        self._full = full
        return False, online

    def _lock(self, session: Session) -> None:
        # The UPDATE holds the row (PostgreSQL) or the database (SQLite) until commit.
        holder = {"holder": self.name, "taken_at": utcnow()}
        if session.execute(_take_lock(), holder).rowcount:
            return
        try:  # the migration made the row; recreate it if it was deleted
            with session.begin_nested():
                session.execute(insert(DispatchLock).values(id=1, **holder))
        except IntegrityError:  # another dispatcher made it first
            session.execute(_take_lock(), holder)

    def _lock_and_look(self, session: Session, online: list[Worker] | None = None) -> list[Worker]:
        """The lock (_lock), and the workers online unless the caller read them (`online`). On
        PostgreSQL one statement, a round trip less for each submit, refill and round: the lock's
        UPDATE is a CTE the workers' SELECT is joined to, so it runs first."""
        if online is None and session.get_bind().dialect.name == "postgresql":
            params = {"holder": self.name, "taken_at": utcnow(), "since": worker_registry.online_since()}
            rows = session.execute(_lock_and_online(), params).all()
            if rows:  # none: no lock row to take, which _lock makes
                return [worker for _locked, worker in rows if worker is not None]
        self._lock(session)
        return worker_registry.online(session) if online is None else online

    def _slurm_serves(self, queue: str) -> bool:
        return self.slurm is not None and self.slurm.serves(queue)

    def _left_in_slurm(self, job: SlotJob) -> bool:
        """A job SLURM holds for a queue it no longer serves (removed, or now on Celery)."""
        return job.backend_id is not None and not self._slurm_serves(job.queue)

    def _slurm_for_left_jobs(self, left: bool) -> bool:
        """With no SLURM queue configured, a SLURM backend for the jobs removed queues left there,
        reconciled as any (service/slurm/backend.py). True when one was made now."""
        if not left or self.slurm is not None:
            return False
        log.warning("jobs of a SLURM queue no longer configured are still in SLURM: following them there")
        self.slurm = SlurmBackend(self.settings, {})
        return True

    def _hold_removed(self, session: Session, jobs: list[SlotJob]) -> None:
        """Jobs of queues no longer configured: one sent to a broker before is taken back (nothing
        consumes that queue now; a duplicate delivery is dropped by the claim), and the log says
        which queues hold jobs, whenever that changes."""
        held: dict[str, list[SlotJob]] = {}
        for job in jobs:
            if job.queue not in self.devices:
                held.setdefault(job.queue, []).append(job)
                if job.status == QUEUED and job.released_at is not None and job.backend_id is None:
                    job.write(session, released_at=None, worker=None, gpu_share=None)
        for queue in set(self._removed_seen) - set(held):
            del self._removed_seen[queue]
        for queue, mine in sorted(held.items()):
            counts = (sum(_waiting(job) for job in mine), sum(not _waiting(job) for job in mine))
            if self._removed_seen.get(queue) != counts:
                self._removed_seen[queue] = counts
                log.warning(
                    "queue %s is no longer configured (LABTRAIN_QUEUES) and holds %d queued job(s), never sent, "
                    "and %d running or in SLURM; `labtrain admin queue move %s NEW` moves the queued ones to a "
                    "configured queue, `labtrain admin queue cancel %s` cancels them",
                    queue,
                    counts[0],
                    counts[1],
                    queue,
                    queue,
                )

    def _reap(self, session: Session, now: datetime, jobs: list[SlotJob]) -> set[str]:
        """Running jobs whose heartbeat stopped lost their worker: run them again, or fail them.
        Returns their ids."""
        stale = now - timedelta(seconds=self.settings.job_heartbeat_timeout_s)
        lost = [
            session.get(Job, job.id)
            for job in jobs
            if job.status == RUNNING and job.heartbeat_at is not None and job.heartbeat_at < stale
        ]
        for job in lost:
            lifecycle.requeue_or_fail_lost(
                session,
                job,
                f"worker {job.worker} lost",
                f"the job's worker stopped responding in each of its {job.attempt} attempts (last on {job.worker})",
            )
        return {job.id for job in lost}

    def _resend(self, session: Session, now: datetime, online: set[str], jobs: list[SlotJob]) -> None:
        """Jobs sent but never taken: the broker may have lost them. A duplicate is dropped by the claim.
        A job sent to one GPU worker that has gone is placed again."""
        overdue = now - timedelta(seconds=self.settings.resend_after_s)
        for job in jobs:
            if job.status != QUEUED or job.released_at is None or job.released_at >= overdue:
                continue
            if self._slurm_serves(job.queue) or job.backend_id:  # pending in SLURM is not lost: reconcile sees it
                continue
            if job.worker and job.worker not in online:
                job.write(session, released_at=None, worker=None, gpu_share=None)
            elif self._send(job, session):
                job.write(session, released_at=now)

    def _fill(
        self,
        session: Session,
        queue: str,
        now: datetime,
        jobs: list[SlotJob],
        workers: list[Worker],
        gpus: dict[str, gpu_packing.Gpu] | None,
        free: int | None = None,
        keep_for: str | None = None,
    ) -> list[str]:
        """The free slots of `queue` take its waiting jobs in fair-share order. A CPU job may go to
        any worker of the queue; a GPU job is placed on the GPU it fits best by memory and sent
        to that worker (service/lab/gpu_packing.py): one that fits no GPU now waits, and smaller
        ones behind it may go first. `jobs` are the queue's queued and running jobs; `gpus` is
        what the queue's GPUs have free (None for CPUs); `free`, where given, is the queue's free
        slots (a SLURM queue's, service/slurm/backend.py). `keep_for`: the worker that refills its
        slot (refill): one job at most, chosen for that worker, neither written nor sent (the
        worker's claim releases it); or _UNSENT (a release_arrival): one job at most, released to
        the queue, sent after the commit."""
        waiting = [job for job in jobs if _waiting(job)]
        busy = [job.owner_id for job in jobs if not _waiting(job)]
        if free is None and gpus is not None:
            free = sum(gpu.free_slots for gpu in gpus.values())
        elif free is None:
            free = sum(w.concurrency for w in workers) - len(busy)
        if keep_for is not None:
            free = min(free, 1)
        per_owner = Counter(busy)
        limits: dict[str, int] = {}
        released = []
        waiting = waiting_in_order(session, queue, self.settings, waiting, now)
        budgets = Ledger(session, waiting, now)
        for job in waiting:
            # Every waiting job's budget is looked at, slot or not, so that `waiting` says why now;
            # written only when it changes.
            reason = budgets.waiting_reason(job)
            if reason != job.waiting:
                job.write(session, waiting=reason)
            if reason is not None or free <= 0:
                continue
            if job.owner_id not in limits:
                limits[job.owner_id] = running_limit(self.settings, job.owner_limits, queue)
            if per_owner[job.owner_id] >= limits[job.owner_id]:
                continue
            gpu = None
            placed: dict[str, Any] = {}
            if gpus is not None:
                need = gpu_packing.need_mb(job, self.settings)
                gpu = gpu_packing.place(gpus, need)
                if gpu is None:
                    continue
                placed = {"worker": gpu.worker, "gpu_share": gpu.share(need)}
            if keep_for is None and not self._send(job, session, placed.get("worker")):
                free = 0  # the broker is down: try again next round
                continue
            if keep_for is _UNSENT:  # released at its submit: its wake-up tells the dispatcher it need not look
                job.write(session, {RELEASED_AT_SUBMIT: [job.id]}, released_at=now)
            elif keep_for is None:
                job.write(session, released_at=now, **placed)
            # else a refill's: its worker's claim releases it (lifecycle.claim_job `released`), one UPDATE
            if gpu is not None:
                gpu.take(need)
            per_owner[job.owner_id] += 1
            free -= 1
            released.append(job.id)
        return released

    def _send(self, job: SlotJob, session: Session, placed_on: str | None = None) -> bool:
        """To the job's queue, or to its worker's own queue where it was placed on that worker's GPU
        (`placed_on` now, or before: a resend); on a SLURM queue, sbatch."""
        if self._slurm_serves(job.queue):
            return self.slurm.submit(session, session.get(Job, job.id))
        try:
            worker = placed_on or job.worker
            placed = worker and self.devices.get(job.queue) == "gpu"  # packed onto that worker's GPU
            send_job(self.celery, job.id, worker_queue(worker) if placed else job.queue)
            return True
        except Exception:
            log.warning("the broker did not take job %s; it stays queued", job.id, exc_info=True)
            return False


@cache
def _take_lock() -> Update:
    """The lock's UPDATE, built once (every round and refill takes it), on the table: the ORM's
    bulk UPDATE would first look for the row among the session's objects."""
    table = DispatchLock.__table__
    return update(table).where(table.c.id == 1).values(holder=bindparam("holder"), taken_at=bindparam("taken_at"))


@cache
def _lock_and_online() -> Select:
    """_take_lock's UPDATE as a CTE, and each worker online beside its row: one row with no
    worker where none is online, none where the lock's row is missing."""
    table = DispatchLock.__table__
    locked = _take_lock().returning(table.c.id).cte("locked")
    return (
        select(locked.c.id, Worker)
        .select_from(locked)
        .outerjoin(Worker, Worker.heartbeat_at >= bindparam("since"))
        .order_by(Worker.name)
    )


@cache
def _queue_counts() -> Select:
    """round_needed's statement, by queue: built once (building it cost more than running it),
    its times bound at each look (`stale`, `overdue`, `preempt_before`)."""
    waiting = lifecycle.waiting_for_a_slot()
    lost = ((Job.status == RUNNING) & (Job.heartbeat_at < bindparam("stale"))) | (
        (Job.status == QUEUED) & (Job.released_at < bindparam("overdue"))
    )
    old = Job.created_at < bindparam("preempt_before")
    return (
        select(
            Job.queue,
            func.count().filter(~waiting),  # busy: running, or sent and not yet taken
            func.count().filter(waiting),
            func.count().filter(waiting & (Job.course_id.is_not(None) | old)),
            func.count().filter(lost),
            func.count().filter(~waiting & (Job.status == QUEUED) & Job.backend_id.is_(None)),  # at a broker
            func.count().filter(Job.backend_id.is_not(None)),  # SLURM holds them
        )
        .where(families.takes_slot(), Job.status.in_((QUEUED, RUNNING)))
        .group_by(Job.queue)
    )


def _waiting(job: SlotJob) -> bool:
    """Queued and not yet sent: what a free slot may take."""
    return job.status == QUEUED and job.released_at is None


@dataclass(slots=True)
class SlotJob:
    """A job that holds or waits for a worker slot, as a round sees it: the columns it decides by.
    A round reads every such job, however many wait, so not as ORM objects (building each cost
    more than the round's own work on it); what it changes is written by `write`, and an object is
    loaded only for a job a step hands on whole (a lost one requeued, a SLURM submit)."""

    id: str
    status: str
    queue: str
    family: str
    owner_id: str
    course_id: str | None
    priority: int
    tier: str
    created_at: datetime
    released_at: datetime | None
    heartbeat_at: datetime | None
    worker: str | None
    gpu_share: float | None
    gpu_memory_mb: int | None
    backend_id: str | None
    waiting: dict[str, Any] | None
    owner_limits: dict[str, Any] | None  # the owner's own (User.limits), which running_limit reads

    def write(self, session: Session, wake: dict[str, Any] | None = None, **values: Any) -> None:
        """Change these columns, here and in the database (at once, in the round's transaction),
        and send `wake` on JOB_EVENTS with them where given. On the table, not through the ORM:
        its bulk UPDATE would first look for the job among the session's objects, which cost more
        than the statement (a round loads none it writes here, but a SLURM submit's, whose own
        changes are other columns)."""
        for name, value in values.items():
            setattr(self, name, value)
        statement = update(JOBS).where(JOBS.c.id == self.id).values(**values)
        if wake is None:
            session.execute(statement)
        else:
            wakeups.update_and_notify(session, statement, wakeups.JOB_EVENTS, wake)


_ALL, _HOLDERS_AND_HEADS = "all", "holders and heads"
_UNSENT = "(sent after the commit)"  # Dispatcher._fill's keep_for for a release_arrival


@cache
def _unrelease() -> Update:
    """A job released and not sent waits for a slot again (send_arrivals), unless a worker took it."""
    return update(JOBS).where(JOBS.c.id == bindparam("job"), JOBS.c.status == QUEUED).values(released_at=None)


@cache
def _slot_jobs_query(of_queue: bool = False, which: str = _ALL) -> Select | CompoundSelect:
    """`which`: _ALL; or _HOLDERS_AND_HEADS, the jobs that hold a slot (running, or sent and not
    yet taken) and, of those that wait, each owner's next in each group and tier (by priority,
    then age)."""
    names = [field.name for field in fields(SlotJob) if field.name != "owner_limits"]  # the job's; that one joined
    columns = [getattr(Job, name) for name in names]
    mine = [families.takes_slot(), Job.status.in_((QUEUED, RUNNING))]
    if of_queue:
        mine.append(Job.queue == bindparam("queue"))
    # The owner's limits with each job: a refill places one, for which the owner's row was a read of its own.
    with_limits = select(*columns, User.limits).join(User, User.id == Job.owner_id)
    if which == _ALL:
        return with_limits.where(*mine)
    waiting = lifecycle.waiting_for_a_slot()
    place = func.row_number().over(
        partition_by=(Job.course_id, Job.owner_id, Job.tier), order_by=(Job.priority.desc(), Job.id)
    )
    lines = select(*columns, place.label("place")).where(*mine, waiting).subquery()
    heads = (
        select(*(lines.c[name] for name in names), User.limits)
        .join(User, User.id == lines.c.owner_id)
        .where(lines.c.place == 1)
    )
    return union_all(with_limits.where(*mine, ~waiting), heads)


def _slot_jobs(session: Session, queue: str | None = None, which: str = _ALL) -> list[SlotJob]:
    """The queued and running jobs that hold or wait for a worker slot (of `queue` only, where
    given; `which` of them: _slot_jobs_query), read anew."""
    rows = session.execute(_slot_jobs_query(queue is not None, which), {"queue": queue} if queue else {})
    return [SlotJob(*row) for row in rows]


def refillable(settings: Settings, queues: list[str]) -> list[str]:
    """Of the queues a worker serves, those whose slots its processes refill (workers/refill.py)."""
    known = queue_catalog.catalog(settings)
    return [q for q in queues if q in known and _refills(known[q])]


def _refills(queue: queue_catalog.QueueConfig) -> bool:
    """A CPU queue on Celery: a GPU job is packed by memory and runs in a fresh process; a SLURM
    queue has no Celery worker."""
    return queue.device == "cpu" and queue.backend == "celery"


@cache
def _first_waiting() -> Select:
    """One job of `queues` that waits for a slot, if any (a refill's look)."""
    waiting = lifecycle.waiting_for_a_slot() & Job.queue.in_(bindparam("queues", expanding=True))
    return select(Job.id).where(families.takes_slot(), waiting).limit(1)


def run_forever(settings: Settings, stop: threading.Event) -> None:
    """The dispatcher process: a round whenever something changed its decision (a job was
    submitted, finished or cancelled; a worker came online), heard as a notification on
    PostgreSQL, and on SQLite, which cannot notify, as the ring of the database's doorbell
    (service/core/doorbell.py: the same payloads; where none can be made, it asks every
    `dispatch_interval_s` whether anyone committed, reading no table); and every
    `dispatch_safety_s` besides, which catches a lost wake-up and what no one announces (a
    heartbeat going stale, a job the broker lost)."""
    db = Database(settings.database_url)
    dispatcher = Dispatcher(settings, make_celery(settings))
    if dispatcher.slurm:  # a partition named wrong stops the dispatcher here, saying which
        dispatcher.slurm.check_partitions()
    drivers = [family.driver(settings, db, dispatcher.name) for family in families.all_families() if family.driver]
    listener = (
        wakeups.Listener(settings.database_url, (wakeups.JOB_EVENTS, wakeups.WORKERS))
        if wakeups.notifies(settings.database_url)
        else None
    )
    commits = None if listener else wakeups.SqliteChanges(settings.database_url, settings.dispatch_interval_s)
    timer = settings.dispatch_safety_s
    log.info("%s dispatching when woken, and every %.2f s", dispatcher.name, timer)
    wakes = None
    while not stop.is_set():
        looked_at: set[str] = set()
        try:
            looked_at = _wake_up(db, dispatcher, drivers, wakes)
        except Exception:  # the database may be restarting: keep going
            log.exception("dispatch round failed")
            stop.wait(1.0)
        wakes = _wait_for_a_change(
            listener, commits, settings, stop, starts_count=dispatcher.slurm is not None, looked_at=looked_at
        )
    if listener:
        listener.close()
    if commits:
        commits.close()
    db.dispose()


def _wake_up(
    db: Database, dispatcher: Dispatcher, drivers: list[families.Driver], wakes: list[wakeups.Wake] | None = None
) -> set[str]:
    """One transaction looks what is due, searches' steps and a round, and runs the round: a
    freed slot takes a job already waiting (a search's next trial) at once, while the drivers'
    steps (a sampler's ask and tell) run after it; a round again only for the trials they
    submitted, and only where a slot is free for them. `wakes`: what woke it (None: unknown);
    no round where each that counts is a job's end whose worker refills the slot itself.
    Returns the jobs the drivers submitted: that last look saw them queued, so their own
    `queued` wake-ups, arriving after, are old news (_wait_for_a_change)."""
    with db.session() as session:
        due = [(driver, driver.due(session, wakes)) for driver in drivers]
        starts_count = dispatcher.slurm is not None
        counting = None if wakes is None else [wake for wake in wakes if _changes_decision(wake, starts_count)]
        # A burst's arrivals in a queue with no slot free need no look each (settled_by).
        if counting is None or (not dispatcher.settled_by(counting) and any(_needs_round(w) for w in counting)):
            _round_if_needed(session, dispatcher)
    submitted = {job_id for driver, steps in due if steps for job_id in driver.run(steps)}
    if submitted:
        with db.session() as session:
            _round_if_needed(session, dispatcher)
    return submitted


def _round_if_needed(session: Session, dispatcher: Dispatcher) -> None:
    released = dispatcher.round_if_needed(session)
    if released:
        log.info("released %d job(s): %s", len(released), ", ".join(released))


def _wait_for_a_change(
    listener: wakeups.Listener | None,
    commits: wakeups.SqliteChanges | None,
    settings: Settings,
    stop: threading.Event,
    starts_count: bool = True,
    looked_at: set[str] | frozenset[str] = frozenset(),
) -> list[wakeups.Wake] | None:
    """Until a wake-up that may change a round's decision (on SQLite: heard on its doorbell, which
    carries the same payloads), or the timer. Returns the wake-ups that came (None: the timer, a
    commit on SQLite whose wake-ups are not known, or a stop). `starts_count`: see
    _changes_decision. `looked_at`: jobs whose `queued` the last round saw already (a search's
    trials that this dispatcher submitted itself): that first `queued` of each is slept through."""
    deadline = time.monotonic() + settings.dispatch_safety_s
    old_news = set(looked_at)
    while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
        wait = min(left, STOP_CHECK_S)
        wakes = listener.wait(wait) if listener is not None else commits.wakes(wait)
        if wakes is None:  # SQLite: a commit whose wake-ups are not known
            return None
        # Epoch and log events wake the streams, not this: only a new status or worker counts.
        # An arrival its submit released took a slot and left the line as it was: no news.
        old_news.update(job for wake in wakes for job in wake.payload.get(RELEASED_AT_SUBMIT, ()))
        news = [wake for wake in wakes if not _old_news(wake, old_news)]
        if any(_changes_decision(wake, starts_count) for wake in news):
            return wakes
    return None


def _old_news(wake: wakeups.Wake, old_news: set[str]) -> bool:
    """Whether `wake` is the `queued` of a job in `old_news`, which then leaves it (a later
    `queued` of the job, sent back, is news)."""
    if wake.payload.get("status") != QUEUED or wake.payload.get("job") not in old_news:
        return False
    old_news.discard(wake.payload["job"])
    return True


def _left_to_its_refill(wake: wakeups.Wake) -> bool:
    """Whether `wake` is the end of a job its process took for its slot, which it refills in turn."""
    return wake.channel == wakeups.JOB_EVENTS and bool(wake.payload.get("refill")) and bool(wake.payload.get("taken"))


def _needs_round(wake: wakeups.Wake) -> bool:
    """Whether `wake` may need a round: not the end of a job whose worker refills its slot itself
    (Dispatcher.refill; one that cannot says so on the workers' channel). Such an end may still
    step a search, so it wakes the dispatcher all the same (_changes_decision)."""
    return not (wake.channel == wakeups.JOB_EVENTS and wake.payload.get("refill"))


def _changes_decision(wake: wakeups.Wake, starts_count: bool = True) -> bool:
    """Whether a round or a step may decide otherwise after `wake`. "budget": an instructor
    granted hours (service/courses/budgets.py), a waiting job may start. A job that started
    (`running`) frees nothing a Celery slot counts (it was busy once sent) and steps no search
    (pending_searches): it counts only where `starts_count`, on a SLURM queue, whose submitted
    jobs leave its depth as they start."""
    if wake.channel == wakeups.WORKERS or wake.payload.get("type") == "budget":
        return True
    return wake.payload.get("type") == "status" and (starts_count or wake.payload.get("status") != RUNNING)
