"""The job state machine on PostgreSQL: atomic claims, guarded transitions, ordered events."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from service.core import wakeups
from service.core.errors import Conflict
from service.core.orm import Job, JobEvent, utcnow
from service.jobs import lifecycle
from service.lab.users import create_user
from tests.support.sql import statements

pytestmark = pytest.mark.fast  # the fast tier: no servers needed (tests/conftest.py)

SPEC = {"dataset": "iris", "algorithm": "knn"}


def _queued_job(db):
    with db.session() as session:
        user, _ = create_user(session, "carol")
        job = lifecycle.create_job(session, user, family="classic", spec=SPEC, queue="cpu", name=None)
    return job.id, user


def test_only_one_of_many_concurrent_claims_wins(db):
    job_id, _ = _queued_job(db)

    def claim(n):
        with db.session() as session:
            return lifecycle.claim(session, job_id, f"worker-{n}")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(claim, range(16)))
    assert sum(attempt is not None for attempt in results) == 1  # one claim wins, as attempt 1
    assert 1 in results
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job.status == "running" and job.attempt == 1 and job.started_at is not None
        statuses = session.scalars(select(JobEvent.data).where(JobEvent.job_id == job_id)).all()
    assert [s["status"] for s in statuses] == ["queued", "running"]


def test_finish_only_moves_a_running_job(db):
    job_id, _ = _queued_job(db)
    with db.session() as session:
        assert not lifecycle.finish(session, job_id, lifecycle.SUCCEEDED)  # still queued
        assert lifecycle.claim(session, job_id, "w")
        assert lifecycle.finish(session, job_id, lifecycle.FAILED, error="boom", error_code="training_error")
        assert not lifecycle.finish(session, job_id, lifecycle.SUCCEEDED)  # already failed
        job = session.get(Job, job_id)
        assert job.status == "failed" and job.finished_at and job.error == "boom"


def test_cancel_running_sets_the_flag_and_finished_is_a_conflict(db):
    job_id, user = _queued_job(db)
    with db.session() as session:
        lifecycle.claim(session, job_id, "w")
        assert lifecycle.request_cancel(session, session.get(Job, job_id), user) == "running"
        assert session.get(Job, job_id).cancel_requested
        lifecycle.finish(session, job_id, lifecycle.CANCELLED)
    with db.session() as session:
        try:
            lifecycle.request_cancel(session, session.get(Job, job_id), user)
        except Conflict as exc:
            assert exc.status == 409
        else:
            raise AssertionError("cancelling a finished job must be a conflict")


def test_concurrent_event_writers_get_distinct_sequence_numbers(db):
    job_id, _ = _queued_job(db)

    def write(n):
        with db.session() as session:
            return lifecycle.add_event(session, job_id, "log", {"n": n})

    with ThreadPoolExecutor(6) as pool:
        seqs = list(pool.map(write, range(30)))
    assert sorted(seqs) == list(range(2, 32))


def test_a_new_job_is_one_insert_with_its_first_event_and_its_wake_up_names_its_family(db):
    """A submit takes no UPDATE for its event's number, and the dispatcher hears what kind of job came
    (a plain job's `queued` wakes no search look: service/search/driver.py), and in which queue."""
    listener = wakeups.Listener(db.url, (wakeups.JOB_EVENTS,)) if wakeups.notifies(db.url) else None
    if listener:
        listener.wait(0.01)  # listening before the commit
    with statements(db) as seen:
        job_id, user = _queued_job(db)
    assert not [s for s in seen if s.startswith("UPDATE jobs")]
    with db.session() as session:
        assert session.get(Job, job_id).event_seq == 1
        assert session.scalars(select(JobEvent.seq).where(JobEvent.job_id == job_id)).all() == [1]
    if listener:
        wakes = []
        for _ in range(20):
            wakes += [w for w in listener.wait(0.5) if w.payload.get("job") == job_id]
            if wakes:
                break
        listener.close()
        assert wakes and wakes[0].payload == {
            "job": job_id,
            "owner": user.id,
            "family": "classic",
            "type": "status",
            "status": "queued",
            "submitted": "cpu",  # its queue: where no slot is free there, no look (service/dispatcher.py)
        }


def test_events_their_numbers_and_their_wake_up_go_in_one_statement_and_are_heard_once(db):
    """On PostgreSQL the job row's UPDATE that numbers a transaction's events, their INSERT and
    their announcement are one statement (data-modifying CTEs, pg_notify in its result): a round
    trip for what took three. Listeners hear the announcement once, however many rows it wrote;
    SQLite rings its doorbell."""
    job_id, user = _queued_job(db)
    listener = wakeups.Listener(db.url, (wakeups.JOB_EVENTS,)) if wakeups.notifies(db.url) else None
    if listener:
        listener.wait(0.01)  # listening before the commit
    lines = [("log", {"line": f"epoch {n}"}, utcnow()) for n in range(3)]
    with statements(db) as seen, db.session() as session:
        seqs = lifecycle.add_events(session, job_id, lines)
    assert seqs == [2, 3, 4]
    with db.session() as session:
        stored = session.execute(select(JobEvent.seq, JobEvent.data).where(JobEvent.job_id == job_id)).all()
    assert [(seq, data) for seq, data in stored if seq > 1] == [(2 + n, {"line": f"epoch {n}"}) for n in range(3)]
    if listener is None:
        assert not [s for s in seen if "pg_notify" in s]
        return
    assert len(seen) == 1, seen  # the session's BEGIN is psycopg's own, which the engine does not see
    assert seen[0].startswith("WITH advanced AS (UPDATE jobs") and "INSERT INTO job_events" in seen[0], seen
    assert "pg_notify" in seen[0]
    heard = []
    for _ in range(10):
        heard += [w for w in listener.wait(0.2) if w.payload.get("job") == job_id]
    listener.close()
    assert [w.payload for w in heard] == [
        {"job": job_id, "owner": user.id, "family": "classic", "type": "log", "status": None}
    ]
