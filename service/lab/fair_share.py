"""Fair share: the order in which waiting jobs get a worker slot (DESIGN.md decision 5).

Waiting jobs are ordered by tier (debug jobs before batch ones: service/jobs/tiers.py), then
fairly between groups, then between owners inside a group, then by priority and age. A group
is a course (its jobs: `Job.course_id`), weighted by the course's `share`; jobs in no course
(the lab's own research users) form a group of their own, weighted by `research_share`. The
next job goes to the group with the least recent usage per share, and inside it to the owner
with the least recent usage in that group. Usage is device-seconds, each second's weight
halving every half-life, as SLURM's fair-share factor decays; each job already placed ahead
counts as a minute of use for its group and owner, so groups and owners take turns. A
second of a shared GPU counts as the share of the GPU the job held
(service/lab/gpu_packing.py). Only jobs that hold a worker slot count (a search's trials do;
the search does not).
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import Select, bindparam, case, func, or_, select
from sqlalchemy.orm import Session

from service.core.config import Settings
from service.core.orm import Course, Job, utcnow
from service.jobs import families, tiers
from service.jobs.lifecycle import QUEUED

# Each job placed ahead in the order counts as this much use for its owner, so that owners
# with equal use take turns instead of one owner's fifty jobs all going first.
PENDING_CHARGE_S = 60.0


def usage_by_group(
    session: Session, queue: str, half_life_s: float, now: datetime
) -> dict[tuple[str | None, str], float]:
    """Decayed device-seconds on `queue` per (course id, owner), None for jobs in no course: a
    second used t seconds ago counts 0.5**(t / half-life)."""
    horizon = now - timedelta(seconds=half_life_s * 10)  # older use weighs under 0.1 %
    # A re-queued job keeps no start until it starts again: left out while it waits.
    rows = session.execute(
        select(Job.course_id, Job.owner_id, Job.started_at, Job.finished_at, Job.gpu_share).where(
            Job.queue == queue,
            families.takes_slot(),
            Job.status != QUEUED,
            Job.started_at.is_not(None),
            or_(Job.finished_at.is_(None), Job.finished_at >= horizon),
        )
    )
    decay = math.log(2) / half_life_s
    usage: dict[tuple[str | None, str], float] = defaultdict(float)
    for course, owner, started, finished, share in rows:
        end = finished or now
        # The integral of exp(-decay * age) over the job's run, ages measured from now.
        age_end, age_start = (now - end).total_seconds(), (now - started).total_seconds()
        seconds = (math.exp(-decay * max(age_end, 0)) - math.exp(-decay * max(age_start, 0))) / decay
        usage[(course, owner)] += seconds * (share if share is not None else 1.0)
    return usage


def usage_by_owner(session: Session, queue: str, half_life_s: float, now: datetime) -> dict[str, float]:
    """Each owner's decayed device-seconds on `queue`, in all their groups together."""
    usage: dict[str, float] = defaultdict(float)
    for (_course, owner), seconds in usage_by_group(session, queue, half_life_s, now).items():
        usage[owner] += seconds
    return usage


@cache
def _queued_of_queue() -> Select:
    # Every job view of a queued job asks it: built once (building cost more than running it).
    return select(Job.id, Job.owner_id, Job.course_id, Job.priority, Job.tier, Job.released_at).where(
        Job.queue == bindparam("queue"), Job.status == QUEUED, families.takes_slot()
    )


def waiting_in_order(
    session: Session, queue: str, settings: Settings, waiting: list[Job], now: datetime | None = None
) -> list[Job]:
    """`waiting`, the queue's queued jobs not yet sent to the broker, in the order fair share would
    send them. The caller reads only the columns the order looks at (its id, owner, course,
    priority and tier): a dispatch round as its rows (service/dispatcher.py: SlotJob), a job's
    position as queue_order's."""
    if len({(job.course_id, job.owner_id) for job in waiting}) < 2:
        # One owner waits (a student's burst): no one to be fair between, so the usage is not
        # read and the order is theirs, tier by tier, as _Turns.order would place it.
        return sorted(waiting, key=lambda job: (tiers.rank(job.tier), *_owners_order(job)))
    now = now or utcnow()
    by_tier: dict[int, list[Job]] = defaultdict(list)
    for job in waiting:
        by_tier[tiers.rank(job.tier)].append(job)
    usage = usage_by_group(session, queue, settings.usage_half_life_s, now)
    courses = {job.course_id for job in waiting} - {None}
    shares: dict[str | None, float] = {None: settings.research_share}
    if courses:
        shares.update(
            {
                course: share
                for course, share in session.execute(select(Course.id, Course.share).where(Course.id.in_(courses)))
            }
        )
    turns = _Turns(usage, shares)
    return [job for rank in sorted(by_tier) for job in turns.order(by_tier[rank])]


def _owners_order(job: Job) -> tuple:
    """The order of one owner's jobs: priority, then age (ids grow with time)."""
    return -job.priority, job.id


class _Turns:
    """Charges use as jobs are placed, across tiers: a debug job placed counts for the batch ones."""

    def __init__(self, usage: dict[tuple[str | None, str], float], shares: dict[str | None, float]):
        self.owner_use = dict(usage)
        self.group_use: dict[str | None, float] = defaultdict(float)
        for (group, _owner), seconds in usage.items():
            self.group_use[group] += seconds
        self.shares = shares

    def _per_share(self, group: str | None) -> float:
        share = self.shares.get(group, 1.0)
        return self.group_use[group] / share if share > 0 else math.inf  # a share of 0: only when no one else waits

    def order(self, waiting: list[Job]) -> list[Job]:
        """Repeatedly: the group with the least use per share, its owner with the least use
        there, that owner's next job (by priority, then age)."""
        queues: dict[str | None, dict[str, list[Job]]] = defaultdict(lambda: defaultdict(list))
        for job in sorted(waiting, key=_owners_order):
            queues[job.course_id][job.owner_id].append(job)
        owners = {
            group: [self._owner_turn(group, owner, jobs) for owner, jobs in mine.items()]
            for group, mine in queues.items()
        }
        for heap in owners.values():
            heapq.heapify(heap)
        groups = [self._group_turn(group, owners[group]) for group in owners]
        heapq.heapify(groups)
        order = []
        while groups:
            group = heapq.heappop(groups)[-1]
            owner = heapq.heappop(owners[group])[-1]
            mine = queues[group][owner]
            order.append(mine.pop(0))
            self.owner_use[(group, owner)] = self.owner_use.get((group, owner), 0.0) + PENDING_CHARGE_S
            self.group_use[group] += PENDING_CHARGE_S
            if mine:
                heapq.heappush(owners[group], self._owner_turn(group, owner, mine))
            if owners[group]:
                heapq.heappush(groups, self._group_turn(group, owners[group]))
        return order

    def _owner_turn(self, group: str | None, owner: str, jobs: list[Job]) -> tuple:
        head = jobs[0]
        return self.owner_use.get((group, owner), 0.0), -head.priority, head.id, owner

    def _group_turn(self, group: str | None, owners: list[tuple]) -> tuple:
        _use, priority, head_id, _owner = owners[0]  # the job the group would place next
        return self._per_share(group), priority, head_id, group  # job ids differ: groups are never compared


def place_without_the_line(session: Session, job: Job) -> int | None:
    """`job`'s place in queue_order (1: next), where one statement that counts can tell it without
    reading the queue: a sent job's among the sent; a waiting job's where its owner alone waits
    there (in one group), whose jobs go in their own order. None otherwise (read queue_order)."""
    if job.family in families.slotless():
        return None
    bound = {
        "queue": job.queue,
        "owner": job.owner_id,
        "course": job.course_id or "",
        "id": job.id,
        "rank": tiers.rank(job.tier),
        "priority": job.priority,
        "released_at": job.released_at,
    }
    sent, sent_ahead, waiting_ahead, others_waiting = session.execute(_counted_ahead(), bound).one()
    if job.released_at is not None:
        return sent_ahead + 1
    if others_waiting:
        return None  # fair share places them
    return sent + waiting_ahead + 1


@cache
def _counted_ahead() -> Select:
    """The queue's sent jobs, those sent before `released_at` (then by id), the waiting ones ahead
    of `rank`, `priority` and `id` in one owner's order (_owners_order, tier first), and the
    waiting ones of another owner, or of the owner in another group. Built once."""
    waiting = Job.released_at.is_(None)
    rank = case(tiers.RANK, value=Job.tier, else_=tiers.rank(tiers.BATCH))
    ahead = (rank < bindparam("rank")) | (
        (rank == bindparam("rank"))
        & (
            (Job.priority > bindparam("priority"))
            | ((Job.priority == bindparam("priority")) & (Job.id < bindparam("id")))
        )
    )
    sent_before = (Job.released_at < bindparam("released_at")) | (
        (Job.released_at == bindparam("released_at")) & (Job.id < bindparam("id"))
    )
    others = (Job.owner_id != bindparam("owner")) | (func.coalesce(Job.course_id, "") != bindparam("course"))
    return select(
        func.count().filter(~waiting),
        func.count().filter(~waiting & sent_before),
        func.count().filter(waiting & ahead),
        func.count().filter(waiting & others),
    ).where(Job.queue == bindparam("queue"), Job.status == QUEUED, families.takes_slot())


def queue_order(session: Session, queue: str, settings: Settings) -> list[str]:
    """Ids of every queued job of `queue` in the order they will start: already sent first. One
    statement reads both (each only what the order looks at)."""
    rows = session.execute(_queued_of_queue(), {"queue": queue}).all()
    sent = sorted((row for row in rows if row.released_at is not None), key=lambda row: (row.released_at, row.id))
    waiting = [row for row in rows if row.released_at is None]
    return [row.id for row in sent] + [row.id for row in waiting_in_order(session, queue, settings, waiting)]
