"""Fair share: the order in which waiting jobs get a worker slot (DESIGN.md decision 5).

Waiting jobs are ordered by tier (debug jobs before batch ones: service/jobs/tiers.py), then
by their owner's recent usage (device-seconds, each second's weight halving every half-life,
as SLURM's fair-share factor decays; each job already placed ahead counts as a minute of
use, so owners take turns), then priority, then age. A second of a shared GPU counts as the
share of the GPU the job held (service/lab/gpu_packing.py). Only jobs that hold a worker
slot count (a search's trials do; the search does not).
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from service.core.config import Settings
from service.core.orm import Job, utcnow
from service.jobs import families, tiers
from service.jobs.lifecycle import QUEUED

# Each job placed ahead in the order counts as this much use for its owner, so that owners
# with equal use take turns instead of one owner's fifty jobs all going first.
PENDING_CHARGE_S = 60.0


def usage_by_owner(session: Session, queue: str, half_life_s: float, now: datetime) -> dict[str, float]:
    """Each owner's decayed device-seconds on `queue`: a second used t seconds ago counts 0.5**(t / half-life)."""
    horizon = now - timedelta(seconds=half_life_s * 10)  # older use weighs under 0.1 %
    # A re-queued job keeps the start of its lost attempt but runs nothing now: left out until
    # it starts again (which sets a new start).
    rows = session.execute(
        select(Job.owner_id, Job.started_at, Job.finished_at, Job.gpu_share).where(
            Job.queue == queue,
            families.takes_slot(),
            Job.status != QUEUED,
            Job.started_at.is_not(None),
            or_(Job.finished_at.is_(None), Job.finished_at >= horizon),
        )
    )
    decay = math.log(2) / half_life_s
    usage: dict[str, float] = defaultdict(float)
    for owner, started, finished, share in rows:
        end = finished or now
        # The integral of exp(-decay * age) over the job's run, ages measured from now.
        age_end, age_start = (now - end).total_seconds(), (now - started).total_seconds()
        seconds = (math.exp(-decay * max(age_end, 0)) - math.exp(-decay * max(age_start, 0))) / decay
        usage[owner] += seconds * (share if share is not None else 1.0)
    return usage


def waiting_in_order(session: Session, queue: str, settings: Settings, now: datetime | None = None) -> list[Job]:
    """Queued jobs not yet sent to the broker, in the order fair share would send them:
    repeatedly the next job (by priority, then age) of the owner with the least use."""
    now = now or utcnow()
    waiting = session.scalars(
        select(Job).where(Job.queue == queue, Job.status == QUEUED, families.takes_slot(), Job.released_at.is_(None))
    )
    by_tier: dict[int, list[Job]] = defaultdict(list)
    for job in waiting:
        by_tier[tiers.rank(job.tier)].append(job)
    usage = usage_by_owner(session, queue, settings.usage_half_life_s, now)
    return [job for rank in sorted(by_tier) for job in _turns(by_tier[rank], usage)]


def _turns(waiting: list[Job], usage: dict[str, float]) -> list[Job]:
    """Repeatedly the next job (by priority, then age) of the owner with the least use."""
    mine: dict[str, list[Job]] = defaultdict(list)
    for job in sorted(waiting, key=lambda job: (-job.priority, job.id)):
        mine[job.owner_id].append(job)

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
    sent = session.scalars(
        select(Job.id)
        .where(Job.queue == queue, Job.status == QUEUED, Job.released_at.is_not(None))
        .order_by(Job.released_at, Job.id)
    )
    return list(sent) + [job.id for job in waiting_in_order(session, queue, settings)]
