"""A CPU worker's processes refill their own slots (workers/refill.py), on real processes
(PostgreSQL, Redis, the dispatcher, one worker of one slot, the API): each takes the next job as
its job ends, and a worker asked to stop finishes its job and takes no other."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, select

from service.core import wakeups
from service.core.orm import Job, Worker
from service.jobs import submission
from service.jobs.context import SubmitContext
from service.lab.users import create_user
from tests.service.lab.test_lab_server import start_lab, wait_status
from tests.support import wake_ups
from tests.support.workers import heartbeat
from workers.refill import Refill
from workers.runner import JobRunner

WORKER = "w1"
LONG = {"dataset": "digits", "algorithm": "random_forest", "params": {"n_estimators": 800}}  # a few seconds
SHORT = {"dataset": "iris", "algorithm": "knn"}


@pytest.fixture
def lab(tmp_path, make_pg_database, make_redis_url):
    lab = start_lab(
        tmp_path, make_pg_database, make_redis_url(), ["--queues", "cpu", "--concurrency", "1", "--name", WORKER]
    )
    yield lab
    lab.stop()


def submit(client, spec: dict) -> str:
    response = client.post("/api/v1/jobs", json=spec)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_the_process_takes_the_next_job_itself_as_its_job_ends(lab):
    client = lab.student("anna")
    first = submit(client, LONG)
    wait_status(client, first, ("running",))
    short = [submit(client, SHORT) for _ in range(3)]  # they wait for the one slot
    jobs = [client.wait_for(job_id) for job_id in [first, *short]]
    assert [(j["status"], j["attempt"]) for j in jobs] == [("succeeded", 1)] * 4, [j["error"] for j in jobs]
    for job_id in short:
        events = client.get(f"/api/v1/jobs/{job_id}/events").json()["items"]
        assert [e["data"]["status"] for e in events if e["type"] == "status"] == ["queued", "running", "succeeded"]
    worker_log = lab.processes[1].output()
    # The first short job waited while the long one ran: its end's refill took it, no round of the
    # dispatcher (whose safety round could take a later one between an end and its refill).
    assert f"took job {short[0]} for the slot its last job freed" in worker_log, worker_log[-3000:]


def test_a_worker_asked_to_stop_finishes_its_job_and_takes_no_other(lab):
    client = lab.student("anna")
    running = submit(client, LONG)
    wait_status(client, running, ("running",))
    waiting = submit(client, SHORT)
    worker = lab.processes[1]
    os.kill(worker.proc.pid, signal.SIGTERM)  # Celery's warm shutdown: the running job ends first
    deadline = time.monotonic() + 20
    while _registered(lab) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _registered(lab), "the worker stayed in the registry after it was asked to stop"
    assert client.get(f"/api/v1/jobs/{running}").json()["status"] == "running"
    assert client.wait_for(running)["status"] == "succeeded"
    worker.proc.wait(60)
    with lab.db.session() as session:
        left = session.get(Job, waiting)
        assert (left.status, left.released_at) == ("queued", None)  # neither refilled nor sent
    lab.add_worker("--queues", "cpu", "--concurrency", "1", "--name", "w2")
    assert client.wait_for(waiting)["status"] == "succeeded"


def _registered(lab) -> bool:
    with lab.db.session() as session:
        return session.scalar(select(Worker.name).where(Worker.name == WORKER)) is not None


def test_a_refill_claims_the_job_it_takes_in_the_same_transaction(db, settings):
    """The round's lock, the release to this worker and the claim commit once: a commit less a job,
    and no moment where the job is released to a process that has not claimed it."""
    with db.session() as session:
        owner = create_user(session, "anna")[0]
        waiting = submission.submit(SubmitContext(session, settings, owner), SHORT).id
    heartbeat(db, WORKER, "cpu", concurrency=1)
    runner = JobRunner(settings, db, WORKER, refills=True)
    refill = Refill(settings, WORKER, ["cpu"])
    with _statements_and_commits(db) as seen:
        assert runner.run_taken(refill._take)
    lock = seen.index(next(s for s in seen if "UPDATE dispatch_lock" in s))  # on PostgreSQL in a WITH
    claim = seen.index(next(s for s in seen if "UPDATE jobs SET status" in s))  # on PostgreSQL in a WITH
    assert lock < claim and "COMMIT" not in seen[lock:claim], seen[lock : claim + 1]
    assert not [s for s in seen if s.startswith("SELECT users.")], seen  # the owner's limits come with the job
    released = [s for s in seen if "UPDATE jobs SET" in s and "released_at" in s]
    assert len(released) == 1 and "status" in released[0], seen  # the claim releases it: one UPDATE
    with db.session() as session:
        job = session.get(Job, waiting)
        assert (job.status, job.worker, job.attempt) == ("succeeded", WORKER, 1), job.error
    assert not runner.run_taken(refill._take)  # nothing waits: nothing taken, nothing run


def test_a_slot_with_nothing_waiting_looks_once_outside_a_transaction(db, settings):
    """A job at a time: the slot its end freed finds nothing waiting with one statement, and no
    transaction (on PostgreSQL a BEGIN and a COMMIT, while the job's client is being told)."""
    heartbeat(db, WORKER, "cpu", concurrency=1)
    runner = JobRunner(settings, db, WORKER, refills=True)
    alone: list[bool] = []

    def in_autocommit(conn, *_args) -> None:
        alone.append(getattr(conn.connection.dbapi_connection, "autocommit", False) is True)

    event.listen(db.engine, "before_cursor_execute", in_autocommit)
    try:
        with _statements_and_commits(db) as seen:
            Refill(settings, WORKER, ["cpu"]).run_following(runner)
    finally:
        event.remove(db.engine, "before_cursor_execute", in_autocommit)
    assert len(seen) == 1 and "FROM jobs" in seen[0], seen  # the look, and no COMMIT
    assert alone == [db.url.startswith("postgresql")]  # SQLite begins no transaction for a read


def test_a_process_that_took_its_last_job_takes_the_next_without_a_look_first(db, settings):
    """The look outside a transaction is for a slot whose last job came by the broker: after a
    take, the next job likely waits (a burst), and the take's own transaction looks."""
    with db.session() as session:
        owner = create_user(session, "anna")[0]
        jobs = [submission.submit(SubmitContext(session, settings, owner), SHORT).id for _ in range(2)]
    heartbeat(db, WORKER, "cpu", concurrency=1)
    runner = JobRunner(settings, db, WORKER, refills=True)
    with wake_ups.heard(db, (wakeups.JOB_EVENTS, wakeups.WORKERS)) as heard, _statements_and_commits(db) as seen:
        Refill(settings, WORKER, ["cpu"]).run_following(runner)
    looks = [s for s in seen if s.startswith("SELECT jobs.id") and "LIMIT" in s]
    takes = [s for s in seen if "UPDATE dispatch_lock" in s]
    assert (len(looks), len(takes)) == (1, 3), seen  # the last take found nothing, in its transaction
    with db.session() as session:
        assert [session.get(Job, job_id).status for job_id in jobs] == ["succeeded", "succeeded"]
    if wakeups.notifies(db.url):  # SQLite rings a doorbell with no payload
        # Each end says its process took it (the dispatcher leaves the slot to that process), and
        # the slot it leaves free at last is rung.
        ends = [p for p in heard if p.get("status") == "succeeded"]
        assert [(p["job"], p.get("refill"), p.get("taken")) for p in ends] == [(j, WORKER, True) for j in jobs], heard
        assert [p for p in heard if "slot_free" in p] == [{"worker": WORKER, "slot_free": True}], heard


def test_a_job_that_came_by_the_broker_ends_without_saying_it_was_taken(db, settings):
    """Its slot's next take looks outside a transaction first and rings no one where nothing waits:
    the dispatcher forgets its last look at this end instead."""
    with db.session() as session:
        owner = create_user(session, "anna")[0]
        job_id = submission.submit(SubmitContext(session, settings, owner), SHORT).id
    heartbeat(db, WORKER, "cpu", concurrency=1)
    runner = JobRunner(settings, db, WORKER, refills=True)
    with wake_ups.heard(db, (wakeups.JOB_EVENTS, wakeups.WORKERS)) as heard:
        assert runner.run(job_id) == "succeeded"
        Refill(settings, WORKER, ["cpu"]).run_following(runner)
    if wakeups.notifies(db.url):
        ends = [p for p in heard if p.get("status") == "succeeded"]
        assert [(p.get("refill"), p.get("taken")) for p in ends] == [(WORKER, None)], heard
        assert not [p for p in heard if "slot_free" in p], heard


@contextmanager
def _statements_and_commits(db) -> Iterator[list[str]]:
    """The statements `db`'s engine runs meanwhile, and its commits (as "COMMIT"), in their order."""
    seen: list[str] = []

    def statement(_conn, _cursor, text, *_args) -> None:
        seen.append(" ".join(text.split()))

    def commit(_conn) -> None:
        seen.append("COMMIT")

    event.listen(db.engine, "before_cursor_execute", statement)
    event.listen(db.engine, "commit", commit)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", statement)
        event.remove(db.engine, "commit", commit)
