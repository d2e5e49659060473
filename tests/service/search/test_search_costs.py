"""What the dispatcher pays per search trial, counted in SQL statements: a trial costs one
round and one step of its search, and a trial that only started costs neither."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from service.core import wakeups
from service.core.broker import make_celery
from service.core.orm import Job, JobEvent, utcnow
from service.dispatcher import Dispatcher, _wake_up
from service.jobs import lifecycle
from service.search.driver import LEASE_S, SearchDriver
from tests.service.search.test_search import KNN_SEARCH
from tests.support.sql import statements
from tests.support.workers import heartbeat

pytestmark = pytest.mark.fast


def rounds(seen: list[str]) -> int:
    return sum("UPDATE dispatch_lock" in s for s in seen)  # on PostgreSQL maybe in a WITH


def trials(db, parent_id: str) -> list[Job]:
    with db.session() as session:
        return list(session.scalars(select(Job).where(Job.parent_id == parent_id).order_by(Job.trial_number)))


@pytest.fixture
def celery(settings):
    """The broker the dispatcher sends to, its cpu queue emptied afterwards (the session's Redis
    database is shared with the tests that follow)."""
    app = make_celery(settings)
    yield app
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge("cpu")


def test_a_trial_costs_one_round_and_one_step_and_a_start_costs_neither(client, alice, settings, db, celery):
    heartbeat(db, "w1", "cpu", concurrency=1)
    dispatcher = Dispatcher(settings, celery, name="test-dispatcher")
    driver = SearchDriver(settings, db, dispatcher.name)
    spec = {**KNN_SEARCH, "search": {**KNN_SEARCH["search"], "trials": 3, "parallel": 2}}
    parent = client.post("/api/v1/jobs", json=spec, headers=alice).get_json()["id"]

    with statements(db) as seen:  # the search starts: two trials, the one slot takes the first
        looked_at = _wake_up(db, dispatcher, [driver])
    first, second = trials(db, parent)
    assert rounds(seen) == 1 and first.released_at is not None and second.released_at is None
    assert looked_at == {first.id, second.id}  # their own `queued` wake-ups will be old news

    with db.session() as session:
        assert lifecycle.claim(session, first.id, "w1")
    with statements(db) as seen:  # it starts: nothing to step, no slot free
        assert _wake_up(db, dispatcher, [driver]) == set()
    assert rounds(seen) == 0 and not [s for s in seen if not s.startswith("SELECT")]

    with db.session() as session:
        lifecycle.finish(session, first.id, lifecycle.SUCCEEDED, metrics={"accuracy": 0.9})
    with statements(db) as seen:  # it ends: one round sends the second, one step submits the third
        looked_at = _wake_up(db, dispatcher, [driver])
    assert rounds(seen) == 1 and sum(s.startswith("INSERT INTO jobs") for s in seen) == 1
    assert [t.released_at is not None for t in trials(db, parent)] == [True, True, False]
    assert looked_at == {trials(db, parent)[2].id}


def test_a_step_renews_its_lease_only_when_a_third_of_it_has_passed(client, alice, settings, db):
    driver = SearchDriver(settings, db, "test-dispatcher")
    parent = client.post("/api/v1/jobs", json=KNN_SEARCH, headers=alice).get_json()["id"]
    driver.run_pending()  # takes the lease and starts the search

    def lease_writes() -> int:
        with statements(db) as seen:
            driver.step(parent)
        return sum(s.startswith("UPDATE jobs") and "heartbeat_at" in s for s in seen)

    assert lease_writes() == 0
    renewed = utcnow() - timedelta(seconds=LEASE_S / 3 + 1)
    with db.session() as session:
        session.execute(update(Job).where(Job.id == parent).values(heartbeat_at=renewed))
    assert lease_writes() == 1
    with db.session() as session:
        assert session.get(Job, parent).worker == "test-dispatcher"


def test_with_no_search_running_only_a_new_queued_job_makes_the_driver_look(client, alice, settings, db, celery):
    driver = SearchDriver(settings, db, "test-dispatcher")

    def looks(wakes) -> int:
        with statements(db) as seen, db.session() as session:
            driver.due(session, wakes)
        return sum("jobs_1" in s for s in seen)  # the search look joins a search's trials

    def wake(status: str | None, channel: str = wakeups.JOB_EVENTS, **more) -> wakeups.Wake:
        return wakeups.Wake(channel, {"job": "x", "type": "status", "status": status, **more})

    assert looks(None) == 1  # the first look, and a timer's: always
    assert looks([wake("running"), wake("succeeded")]) == 0  # no search: a job's start or end starts none
    assert looks([wake("queued")]) == 1  # a job submitted may be a search (the wake-up names no family)
    assert looks([wake("queued", family="classic"), wake("queued", family="network")]) == 0  # not a search
    assert looks([wake("queued", family="classic"), wake("queued", family="search")]) == 1
    parent = client.post("/api/v1/jobs", json=KNN_SEARCH, headers=alice).get_json()["id"]
    assert looks([wake("queued")]) == 1
    with statements(db), db.session() as session:
        assert driver.due(session, [wake("succeeded")]) == [parent]  # one runs: every wake-up looks


def test_a_step_reads_the_searchs_whole_row_once_a_transaction(client, alice, settings, db):
    """Its lease reads the search's row, and the submit of its next trial; its outcomes are read
    as the columns a step uses; the outcome's `trial` event and the progress are one UPDATE of the
    search's row, which is not read again for it."""
    driver = SearchDriver(settings, db, "test-dispatcher")
    spec = {**KNN_SEARCH, "search": {**KNN_SEARCH["search"], "trials": 3, "parallel": 1}}
    parent = client.post("/api/v1/jobs", json=spec, headers=alice).get_json()["id"]
    driver.run_pending()
    (first,) = trials(db, parent)
    with db.session() as session:
        assert lifecycle.claim(session, first.id, "w1")
        lifecycle.finish(session, first.id, lifecycle.SUCCEEDED, metrics={"accuracy": 0.9})

    with statements(db) as seen:
        assert len(driver.step(parent)) == 1
    whole_rows = [s for s in seen if s.startswith("SELECT jobs.id, jobs.owner_id, jobs.name")]
    assert len(whole_rows) == 2, seen
    # On PostgreSQL the UPDATE writes the event too, in one statement (lifecycle._advance_and_record).
    (search_update,) = [s for s in seen if s.startswith(("UPDATE jobs", "WITH advanced AS (UPDATE jobs"))]
    assert "event_seq" in search_update and "progress" in search_update
    with db.session() as session:
        search = session.get(Job, parent)
        assert search.progress["trials_done"] == 1 and search.metrics == {"accuracy": 0.9, "best_trial": first.id}
        trial_events = session.scalars(select(JobEvent.data).where(JobEvent.job_id == parent, JobEvent.type == "trial"))
        assert [event["number"] for event in trial_events] == [first.trial_number]
