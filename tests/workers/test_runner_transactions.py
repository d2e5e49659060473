"""A short job's worker writes twice, its claim and its outcome: the claim's one UPDATE returns
what the job runs, and the log lines and progress that waited go with the outcome, numbered
before `succeeded`, each once. On PostgreSQL the claim is one statement outside a transaction, and
each UPDATE writes its events and their wake-up too."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import event, select

from service.core.orm import Job, JobEvent, Model
from service.jobs import lifecycle
from service.lab.users import create_user
from workers import reporter as reporter_module
from workers.runner import JobRunner

pytestmark = pytest.mark.fast

IRIS = {"dataset": "iris", "algorithm": "knn", "params": {"n_neighbors": 5}, "evaluation": {"cv": 5}}


@pytest.fixture
def queued(db, settings):
    from service.core.orm import User
    from service.jobs import submission
    from service.jobs.context import SubmitContext

    with db.session() as session:
        user, _ = create_user(session, "alice")
        ctx = SubmitContext(session, settings, session.get(User, user.id))
        return submission.submit(ctx, dict(IRIS)).id


@pytest.fixture
def statements(db):
    """The runner's statements (this thread's: the job's watch looks from its own, twice a second)."""
    seen: list[str] = []
    alone: list[bool] = []  # each statement's: whether it committed alone (PostgreSQL's autocommit)

    def on_statement(conn, cursor, statement, parameters, context, executemany):
        if threading.current_thread() is threading.main_thread():
            seen.append(" ".join(statement.split()))
            alone.append(getattr(conn.connection.dbapi_connection, "autocommit", False) is True)

    def on_commit(conn):
        if threading.current_thread() is threading.main_thread():
            seen.append("COMMIT")
            alone.append(False)

    event.listen(db.engine, "before_cursor_execute", on_statement)
    event.listen(db.engine, "commit", on_commit)
    yield seen, alone
    event.remove(db.engine, "before_cursor_execute", on_statement)
    event.remove(db.engine, "commit", on_commit)


def events_of(db, job_id):
    with db.session() as session:
        return [
            (e.seq, e.type, e.data)
            for e in session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq))
        ]


def test_a_short_job_is_a_claim_and_an_outcome(db, settings, queued, statements, monkeypatch):
    monkeypatch.setattr(reporter_module, "WRITE_EVERY_S", 60.0)  # however slow this machine is today
    assert JobRunner(settings, db, "w1").run(queued) == "succeeded"

    seen, alone = statements
    assert seen.count("COMMIT") == 2  # the claim, the outcome: no transaction of its own for the lines
    updates = [n for n, s in enumerate(seen) if "UPDATE jobs" in s]
    assert len(updates) == 2  # the job's row once in each, its events' numbers taken in the same UPDATE
    assert all("RETURNING" in seen[n] for n in updates)  # ... which gives back what the worker reads of it:
    assert not [s for s in seen if s.startswith("SELECT") and "FROM jobs" in s]  # no read of the row
    if db.url.startswith("postgresql"):
        claim, outcome = updates
        for n in updates:  # the row's UPDATE, its events' INSERT and their wake-up: one statement
            assert seen[n].startswith("WITH advanced AS (UPDATE jobs") and "INSERT INTO job_events" in seen[n]
        assert alone[claim] and claim == 0  # the claim is the first statement, and commits alone
        assert not alone[outcome]  # the outcome commits with its model's row
    events = events_of(db, queued)
    assert [seq for seq, _, _ in events] == list(range(1, len(events) + 1))  # each once, in order
    kinds = [(kind, data.get("status") or data.get("message", "").split(":")[0]) for _, kind, data in events]
    assert kinds == [
        ("status", "queued"),
        ("status", "running"),
        ("log", kinds[2][1]),  # the rows and the pipeline
        *[("log", f"fold {fold}/5") for fold in range(1, 6)],
        ("status", "succeeded"),
    ]
    with db.session() as session:
        job = session.get(Job, queued)
        assert job.progress == {"fraction": 1.0} and job.event_seq == len(events)
        assert session.scalar(select(Model.id).where(Model.job_id == queued)) == job.result["model_id"]


def test_a_second_attempt_adds_to_the_progress_the_claim_returned(db, settings, queued):
    with db.session() as session:
        session.get(Job, queued).progress = {"resumed_from": "a checkpoint"}
    assert JobRunner(settings, db, "w1").run(queued) == "succeeded"
    with db.session() as session:
        assert session.get(Job, queued).progress == {"resumed_from": "a checkpoint", "fraction": 1.0}


def test_a_second_delivery_of_a_claimed_job_runs_nothing(db, settings, queued):
    first, second = JobRunner(settings, db, "w1"), JobRunner(settings, db, "w2")
    assert first.run(queued) == "succeeded"
    assert second.run(queued) is None
    statuses = [data["status"] for _, kind, data in events_of(db, queued) if kind == "status"]
    assert statuses == ["queued", "running", "succeeded"]


def test_an_outcome_for_an_attempt_no_longer_running_keeps_the_lines_but_not_the_status(db, queued):
    with db.session() as session:
        attempt = lifecycle.claim(session, queued, "w1")
    lines = [("log", {"message": "fold 1/5"}, lifecycle.utcnow())]
    with db.session() as session:  # another attempt took the job over meanwhile
        assert not lifecycle.finish(session, queued, lifecycle.SUCCEEDED, attempt=attempt + 1, before=lines)
    with db.session() as session:
        assert lifecycle.finish(session, queued, lifecycle.FAILED, attempt=attempt, before=lines, error="boom")
    assert [(kind, data.get("message") or data.get("status")) for _, kind, data in events_of(db, queued)] == [
        ("status", "queued"),
        ("status", "running"),
        ("log", "fold 1/5"),
        ("log", "fold 1/5"),
        ("status", "failed"),
    ]
