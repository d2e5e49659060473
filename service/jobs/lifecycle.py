"""The job lifecycle in the database (DESIGN.md decision 1: the database is the truth).

queued -> running -> succeeded | failed | cancelled. Every transition is one guarded
UPDATE, so two processes can never both move the same job.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Select,
    Text,
    Update,
    bindparam,
    case,
    cast,
    column,
    func,
    insert,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key
from sqlalchemy.sql import ClauseElement

from service.core import wakeups
from service.core.errors import Conflict
from service.core.orm import Job, JobEvent, User, utcnow

log = logging.getLogger("labtrain.jobs")
# A `metrics` event's own fields ({"step", "source", key: value, ...}: what a job logged with MLflow or
# TensorBoard); every other key is a point of that step.
METRICS_EVENT_FIELDS = frozenset({"step", "source"})

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)


def waiting_for_a_slot() -> ColumnElement[bool]:
    """A filter for jobs queued and not yet sent to a worker: what a free slot may take."""
    return (Job.status == QUEUED) & Job.released_at.is_(None)


FINISHED = (SUCCEEDED, FAILED, CANCELLED)


def create_job(
    session: Session,
    owner: User,
    *,
    family: str,
    spec: dict[str, Any],
    queue: str,
    name: str | None,
    time_limit_s: int | None = None,
    max_attempts: int = 3,
    tier: str = "batch",
    gpu_memory_mb: int | None = None,
    **columns: Any,
) -> Job:
    """The queued job's row and its first event. `columns`: the job's others (its course, a trial's
    search, number and priority), in the same INSERT."""
    job = Job(
        **columns,
        tier=tier,
        gpu_memory_mb=gpu_memory_mb,
        owner_id=owner.id,
        family=family,
        spec=spec,
        queue=queue,
        name=name,
        status=QUEUED,
        time_limit_s=time_limit_s,
        max_attempts=max_attempts,
    )
    job.event_seq = 1  # its first event's: a new row has no other writer, no UPDATE takes the number
    session.add(job)
    session.flush()
    # A new job in no course says its queue: where that queue has no free slot, its arrival changes
    # no round's decision (service/dispatcher.py `settled_by`). A course job's budget may hold it.
    wake = {"submitted": queue} if job.course_id is None else None
    _insert_events(session, job.id, job, [("status", {"status": QUEUED, "by": owner.name}, utcnow())], wake)
    return job


def add_event(session: Session, job_id: str, type_: str, data: dict[str, Any]) -> int:
    """Append an event with the job's next sequence number; returns that number."""
    return add_events(session, job_id, [(type_, data, utcnow())])[0]


Event = tuple[str, dict[str, Any], datetime]  # (type, data, time)


def add_events(session: Session, job_id: str, events: list[Event], **job_values: Any) -> list[int]:
    """Append (type, data, time) events with the job's next sequence numbers, in one statement
    and one wake-up however many there are (a worker sends a short job's log lines together);
    `job_values` (a worker's progress) go in the same UPDATE of the job's row.

    The counter lives on the job row: the UPDATE locks that row until commit, so
    concurrent writers to one job get consecutive numbers and never collide.
    """
    if not events:
        if job_values:
            session.execute(update(Job).where(Job.id == job_id).values(**job_values))
        return []
    row = _advance_and_record(session, job_id, {}, job_values, events)
    return _seqs(row.event_seq, len(events))


JOBS = Job.__table__


def _advance(
    session: Session,
    job_id: str,
    guard: Mapping[str, Any],
    count: int,
    values: Mapping[str, Any],
    returning: tuple[str, ...] = (),
    counting: tuple[str, ...] = (),
):
    """One guarded UPDATE of a job's row (its columns equal to `guard`'s): `values`, `counting`'s
    columns plus one, and `count` sequence numbers taken for its events; the row (the last number,
    the owner, the family, `returning`) or None when the guard failed.

    On the table, with a statement built once per shape: every claim, finish and event comes
    here, and the ORM's bulk UPDATE, built anew, cost more than the statement. So, as that UPDATE
    would, what the session holds is flushed first, and a copy of the job it holds is expired
    where the UPDATE changed it (read again when next used)."""
    statement, params = _advance_with_params(session, job_id, guard, count, values, returning, counting)
    row = session.execute(statement, params).one_or_none()
    _expire_held(session, job_id, row, values, counting)
    return row


def _advance_with_params(session, job_id, guard, count, values, returning, counting) -> tuple[Update, dict[str, Any]]:
    session.flush()
    plain = {name: value for name, value in values.items() if not isinstance(value, ClauseElement)}
    statement = _advance_statement(tuple(guard), tuple(plain), returning, counting)
    computed = {name: value for name, value in values.items() if name not in plain}  # a search's CASE
    if computed:
        statement = statement.values(**computed)
    params = {"job_id": job_id, "count": count}
    params.update({f"is_{name}": value for name, value in guard.items()})
    params.update({f"set_{name}": value for name, value in plain.items()})
    return statement, params


def _expire_held(session: Session, job_id: str, row: Any, values: Mapping[str, Any], counting: tuple[str, ...]) -> None:
    held = session.identity_map.get(identity_key(Job, job_id))
    if held is not None and row is not None:
        session.expire(held, ["event_seq", *values, *counting])


def _advance_and_record(
    session: Session,
    job_id: str,
    guard: Mapping[str, Any],
    values: Mapping[str, Any],
    events: list[Event],
    returning: tuple[str, ...] = (),
    counting: tuple[str, ...] = (),
    wake: Mapping[str, Any] | None = None,
    stamp: tuple[str, ...] = (),
):
    """`_advance` for `events`, then the events written and their wake-up sent (`_insert_events`);
    `stamp`: the row's columns added to the last event's data (a claim's attempt, known only once
    the row is updated). The row, or None when the guard failed (nothing written).

    On PostgreSQL one statement, a round trip for what took two: the UPDATE and the INSERT as
    data-modifying CTEs, the INSERT's rows from the UPDATE's (none where the guard failed), and
    pg_notify in the statement's result, once for the row."""
    if session.get_bind().dialect.name != "postgresql":
        row = _advance(session, job_id, guard, len(events), values, returning, counting)
        if row is not None:
            if stamp:
                type_, data, at = events[-1]
                events = [*events[:-1], (type_, {**data, **{name: getattr(row, name) for name in stamp}}, at)]
            _insert_events(session, job_id, row, events, wake)
        return row
    advance, params = _advance_with_params(session, job_id, guard, len(events), values, returning, counting)
    params["events"] = json.dumps([{"type": t, "data": data, "time": _utc(at).isoformat()} for t, data, at in events])
    params["channel"] = wakeups.JOB_EVENTS
    params["payload"] = wakeups.payload_text(
        {"job": job_id, "type": events[-1][0], "status": events[-1][1].get("status"), **(wake or {})}
    )
    computed = any(isinstance(value, ClauseElement) for value in values.values())  # a new UPDATE each time
    recording = _recording_statement.__wrapped__(advance, stamp) if computed else _recording_statement(advance, stamp)
    row = session.execute(recording, params).one_or_none()
    _expire_held(session, job_id, row, values, counting)
    return row


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # as UtcDateTime stores a naive one


@lru_cache(maxsize=256)
def _recording_statement(advance: Update, stamp: tuple[str, ...]) -> Select:
    """`_advance_and_record`'s statement on PostgreSQL, for an UPDATE `_advance_statement` built
    once per shape (so this is too)."""
    advanced = advance.cte("advanced")
    events = (
        func.jsonb_array_elements(cast(bindparam("events", type_=Text), JSONB))
        .table_valued(column("value", JSONB), with_ordinality="n")
        .render_derived(name="event")
    )
    data = events.c.value.op("->")("data")
    if stamp:  # the last event's data, with the row's columns named
        stamped = data.op("||")(func.jsonb_build_object(*(part for name in stamp for part in (name, advanced.c[name]))))
        data = case((events.c.n == bindparam("count"), stamped), else_=data)
    rows = select(
        bindparam("job_id", type_=Text),
        advanced.c.event_seq - bindparam("count") + events.c.n,
        events.c.value.op("->>")("type"),
        data,
        cast(events.c.value.op("->>")("time"), DateTime(timezone=True)),
    ).select_from(advanced.join(events, true()))
    recorded = insert(JobEvent.__table__).from_select(["job_id", "seq", "type", "data", "time"], rows).cte("recorded")
    owner_and_family = func.jsonb_build_object("owner", advanced.c.owner_id, "family", advanced.c.family)
    wake = func.pg_notify(
        bindparam("channel"), cast(cast(bindparam("payload", type_=Text), JSONB).op("||")(owner_and_family), Text)
    )
    return select(*advanced.c, wake.label("woke")).add_cte(recorded)


@lru_cache(maxsize=256)
def _advance_statement(
    guard: tuple[str, ...], setting: tuple[str, ...], returning: tuple[str, ...], counting: tuple[str, ...]
) -> Update:
    columns = JOBS.c
    where = [columns.id == bindparam("job_id")]
    where += [columns[name] == bindparam(f"is_{name}", type_=columns[name].type) for name in guard]
    values: dict[str, Any] = {name: bindparam(f"set_{name}", type_=columns[name].type) for name in setting}
    values.update({name: columns[name] + 1 for name in counting})
    values["event_seq"] = columns.event_seq + bindparam("count")
    taken = (columns.event_seq, columns.owner_id, columns.family, *(columns[name] for name in returning))
    return update(JOBS).where(*where).values(values).returning(*taken)


def _insert_events(
    session: Session, job_id: str, row: Any, events: list[Event], wake: Mapping[str, Any] | None = None
) -> list[int]:
    """`events` numbered up to `row.event_seq`, the number taken for the last (by _advance; a new
    job's row itself); `row` also gives the owner and family the wake-up names, `wake` more of it."""
    seqs = _seqs(row.event_seq, len(events))
    # Delivered at commit: the streams of this job and of its owner wake, and the dispatcher
    # looks again when a job's status changed (submitted, finished, cancelled); the family tells
    # the search driver whether a new `queued` may be a search (service/search/driver.py).
    type_, data, _ = events[-1]
    payload = {"job": job_id, "owner": row.owner_id, "family": row.family, "type": type_, "status": data.get("status")}
    payload.update(wake or {})
    # One INSERT of the table's rows: the ORM's objects and their flush cost more than the write.
    rows = [
        {"job_id": job_id, "seq": seq, "type": t, "data": data, "time": at} for seq, (t, data, at) in zip(seqs, events)
    ]
    wakeups.insert_and_notify(session, JobEvent.__table__, rows, wakeups.JOB_EVENTS, payload)
    return seqs


def _seqs(last: int, count: int) -> list[int]:
    """The sequence numbers of `count` events, the last of them `last`."""
    return list(range(last - count + 1, last + 1))


@dataclass(frozen=True)
class Claimed:
    """What a worker reads of the job it claimed, from the claim's own statement."""

    attempt: int
    family: str
    spec: dict[str, Any]
    owner_id: str
    time_limit_s: int | None
    gpu_memory_mb: int | None
    progress: dict[str, Any] | None  # an earlier attempt's, which this one's adds to


def claim(session: Session, job_id: str, worker: str) -> int | None:
    """Move a queued job to running; returns its attempt number. None means another
    delivery already took it (or it was cancelled): drop this one."""
    claimed = claim_job(session, job_id, worker)
    return claimed.attempt if claimed else None


def claim_job(session: Session, job_id: str, worker: str, released: bool = False) -> Claimed | None:
    """`claim`, giving what the worker runs: one guarded UPDATE moves the job, takes its
    `running` event's number and returns the row's fields (a worker's claim used to read them
    again, and write the event in an UPDATE of its own). `released`: the job was chosen for this
    worker in this transaction (a slot's refill, Dispatcher.refill), and the claim releases it."""
    now = utcnow()
    values = {"status": RUNNING, "started_at": now, "heartbeat_at": now, "worker": worker}
    row = _advance_and_record(
        session,
        job_id,
        {"status": QUEUED},
        {**values, "released_at": now} if released else values,
        [("status", {"status": RUNNING, "worker": worker}, now)],
        returning=("attempt", "spec", "time_limit_s", "gpu_memory_mb", "progress"),
        counting=("attempt",),
        stamp=("attempt",),
    )
    if row is None:
        return None
    return Claimed(row.attempt, row.family, row.spec, row.owner_id, row.time_limit_s, row.gpu_memory_mb, row.progress)


def finish(
    session: Session,
    job_id: str,
    status: str,
    attempt: int | None = None,
    *,
    before: Sequence[Event] = (),
    wake: Mapping[str, Any] | None = None,
    **fields: Any,
) -> bool:
    """End a running job (only the attempt named, if one is). False when it was no longer running:
    a job whose worker was presumed lost and re-queued cannot be finished by the old attempt.

    `before`: events that come before the `status` one (the log lines a worker still held),
    numbered and written with it: the row's UPDATE, one INSERT and one wake-up in all. When
    the job is no longer this attempt's they are still added (the job's log keeps them). `wake`:
    more for the wake-up (`refill`: the worker fills the slot itself, service/dispatcher.py)."""
    guard: dict[str, Any] = {"status": RUNNING}
    if attempt is not None:
        guard["attempt"] = attempt
    data = {"status": status}
    if fields.get("error"):
        data["error"] = fields["error"]
    now = utcnow()
    events = [*before, ("status", data, now)]
    row = _advance_and_record(
        session, job_id, guard, {"status": status, "finished_at": now, **fields}, events, wake=wake
    )
    if row is None:
        if before:
            add_events(session, job_id, list(before))
        return False
    return True


def request_cancel(session: Session, job: Job, by: User) -> str:
    """Cancel a queued job at once; ask a running one to stop. Returns the status after."""
    if job.status in FINISHED:
        raise Conflict(
            f"job {job.id} has already {job.status}; only queued or running jobs can be cancelled", field="status"
        )
    now = utcnow()
    cancelled = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == QUEUED)
        .values(status=CANCELLED, cancel_requested=True, finished_at=now)
    ).rowcount
    if cancelled:
        add_event(session, job.id, "status", {"status": CANCELLED, "by": by.name})
        return CANCELLED
    session.execute(update(Job).where(Job.id == job.id, Job.status == RUNNING).values(cancel_requested=True))
    add_event(session, job.id, "log", {"message": f"cancel requested by {by.name}"})
    cancel_trials(session, job.id, by)
    return RUNNING


def cancel_trials(session: Session, parent_id: str, by: User) -> None:
    """Cancel a search's queued trials now and ask its running ones to stop; the search
    driver ends the search once none is left."""
    for child in session.scalars(
        select(Job).where(
            Job.parent_id == parent_id, Job.status.in_((QUEUED, RUNNING)), Job.cancel_requested.is_(False)
        )
    ):
        request_cancel(session, child, by)


# A running job going back to the queue: no longer sent, on no worker, holding no GPU, not started.
BACK_IN_QUEUE = {
    "status": QUEUED,
    "released_at": None,
    "worker": None,
    "heartbeat_at": None,
    "preempt_requested": False,
    "gpu_share": None,
    "started_at": None,
}


def _attempt_device_s(started_at: datetime | None, gpu_share: float | None) -> float:
    """Device-seconds the attempt now put back held (a GPU's seconds times its share of it), kept
    in earlier_device_s since BACK_IN_QUEUE clears its start and share (service/courses/budgets.py)."""
    if started_at is None:
        return 0.0
    return max(0.0, (utcnow() - started_at).total_seconds()) * (gpu_share if gpu_share is not None else 1.0)


def requeue_preempted(session: Session, job_id: str, attempt: int) -> bool:
    """Put a running job that yielded its slot back in the queue: the attempt is given back
    (a preemption is not a failure) and it resumes from its checkpoint."""
    guard = (Job.id == job_id, Job.status == RUNNING, Job.attempt == attempt)
    held = session.execute(select(Job.started_at, Job.gpu_share).where(*guard)).one_or_none()
    done = session.execute(
        update(Job)
        .where(*guard)
        .values(
            **BACK_IN_QUEUE,
            attempt=Job.attempt - 1,
            preemptions=Job.preemptions + 1,
            earlier_device_s=Job.earlier_device_s + _attempt_device_s(*(held or (None, None))),
        )
    ).rowcount
    if done:
        add_event(session, job_id, "status", {"status": QUEUED, "reason": "preempted", "attempt": attempt})
    return bool(done)


def requeue_or_fail_lost(session: Session, job: Job, reason: str, failure: str) -> None:
    """A running job whose worker is gone without an outcome (a stopped heartbeat, a SLURM job that
    ended): back in the queue while it has attempts left, else failed `worker_lost` saying `failure`."""
    if job.attempt < job.max_attempts:
        log.warning("job %s: %s; re-queueing (attempt %d of %d done)", job.id, reason, job.attempt, job.max_attempts)
        requeue(session, job, reason)
    else:
        log.warning("job %s: %s after %d attempts; failing it", job.id, reason, job.attempt)
        finish(session, job.id, FAILED, attempt=job.attempt, error_code="worker_lost", error=failure)


def requeue(session: Session, job: Job, reason: str) -> None:
    """Put a running job whose worker was lost back in the queue (it resumes from its checkpoint)."""
    session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == RUNNING, Job.attempt == job.attempt)
        .values(
            **BACK_IN_QUEUE, earlier_device_s=Job.earlier_device_s + _attempt_device_s(job.started_at, job.gpu_share)
        )
    )
    add_event(session, job.id, "status", {"status": QUEUED, "reason": reason, "attempt": job.attempt})
