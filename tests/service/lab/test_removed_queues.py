"""A queue an admin removes from LABTRAIN_QUEUES while jobs of it are queued or running (PostgreSQL
and Redis): its queued jobs stay queued, never sent, and say why wherever a student looks; an
admin moves them to a configured queue, each checked against it, or cancels them, both in the
audit log; a running one finishes or is cancelled, and one whose worker was lost waits again."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import pytest
import redis
from sqlalchemy import select, update

from service.api import create_app
from service.core.broker import celery_queues, make_celery
from service.core.orm import AuditEntry, Job, JobEvent, utcnow
from service.dispatcher import Dispatcher
from service.jobs import lifecycle
from service.lab import removed_queues
from tests.service.code.test_sources import SCRIPT, upload
from tests.support.workers import heartbeat

SMALL = {"backend": "celery", "max": {"cpus": 1, "memory_mb": 1024, "time_limit_s": 600}}
BEFORE = {"bigmem": {"backend": "celery"}, "a100": {"backend": "celery", "device": "gpu"}, "small": SMALL}
AFTER = {"small": SMALL, "t4": {"backend": "celery", "device": "gpu"}}  # bigmem and a100 removed
CLASSIC = {"dataset": "iris", "algorithm": "knn"}
NETWORK = {"dataset": "digits", "framework": "pytorch", "network": {"preset": "feedforward"}, "device": "gpu"}


@pytest.fixture
def before(settings):
    return dataclasses.replace(settings, queues=json.dumps(BEFORE))


@pytest.fixture
def settings(settings):
    """The deployment as restarted: what the API, the dispatcher and the admin's commands read."""
    return dataclasses.replace(settings, queues=json.dumps(AFTER))


@pytest.fixture
def old_client(before, db):
    """The API as it was before the restart, to submit jobs to the queues it still had."""
    application = create_app(before)
    yield application.test_client()
    application.extensions["labtrain"].models.close()
    application.extensions["labtrain"].db.dispose()


@pytest.fixture(autouse=True)
def empty_broker_queues(settings, before):
    yield
    redis.Redis.from_url(settings.broker_url).delete(*celery_queues(before), *celery_queues(settings))


def submit(client, headers, spec: dict) -> str:
    created = client.post("/api/v1/jobs", json=spec, headers=headers)
    assert created.status_code == 201, created.get_json()
    return created.get_json()["id"]


def round_(db, dispatcher: Dispatcher) -> list[str]:
    with db.session() as session:
        return dispatcher.run_round(session)


def row(db, job_id: str) -> Job:
    with db.session() as session:
        job = session.get(Job, job_id)
        session.expunge(job)
        return job


def events(db, job_id: str) -> list[JobEvent]:
    with db.session() as session:
        return list(session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq)))


def test_queued_jobs_of_a_removed_queue_stay_unsent_and_say_why(db, client, old_client, alice, before, settings):
    jobs = [submit(old_client, alice, {**CLASSIC, "queue": "bigmem"}) for _ in range(2)]
    heartbeat(db, "big1", "bigmem", concurrency=1)  # still up, as a worker not yet restarted may be
    assert round_(db, Dispatcher(before, make_celery(before))) == jobs[:1]  # sent before the restart

    dispatcher = Dispatcher(settings, make_celery(settings))
    assert round_(db, dispatcher) == []
    assert [row(db, j).status for j in jobs] == ["queued", "queued"]
    assert row(db, jobs[0]).released_at is None  # taken back: nothing consumes bigmem now
    with db.session() as session:
        assert not dispatcher.round_needed(session)  # no round after round for them

    view = client.get(f"/api/v1/jobs/{jobs[0]}", headers=alice).get_json()
    assert (view["status"], view["position"], view["estimated_start"]) == ("queued", None, None)
    assert view["waiting"]["reason"] == "queue_not_configured" and "queue bigmem" in view["waiting"]["message"]
    overview = client.get("/api/v1/queue", headers=alice).get_json()
    assert "bigmem" not in overview["queues"]  # nothing offers it to submit to
    assert overview["not_configured"]["bigmem"]["queued"] == 2
    assert overview["not_configured"]["bigmem"]["running"] == 0
    assert "no longer configured" in overview["not_configured"]["bigmem"]["message"]
    assert {j["waiting"]["reason"] for j in overview["your_queued_jobs"]} == {"queue_not_configured"}
    mine = client.get("/api/v1/me", headers=alice).get_json()["queue"]
    assert [(j["position"], j["estimated_start"], j["waiting"]["reason"]) for j in mine] == [
        (None, None, "queue_not_configured")
    ] * 2


def test_a_running_job_of_a_removed_queue_finishes_or_is_cancelled_and_a_lost_one_waits_again(
    db, client, old_client, alice, before, settings
):
    jobs = [submit(old_client, alice, {**CLASSIC, "queue": "bigmem"}) for _ in range(3)]
    heartbeat(db, "big1", "bigmem", concurrency=3)
    assert sorted(round_(db, Dispatcher(before, make_celery(before)))) == sorted(jobs)
    with db.session() as session:
        for job_id in jobs:
            assert lifecycle.claim(session, job_id, "big1")
    dispatcher = Dispatcher(settings, make_celery(settings))
    assert round_(db, dispatcher) == []
    assert client.get("/api/v1/queue", headers=alice).get_json()["not_configured"]["bigmem"]["running"] == 3

    with db.session() as session:
        lifecycle.finish(session, jobs[0], lifecycle.SUCCEEDED)
    assert row(db, jobs[0]).status == "succeeded"
    cancel = client.post(f"/api/v1/jobs/{jobs[1]}/cancel", headers=alice)
    assert cancel.status_code == 202 and row(db, jobs[1]).cancel_requested  # its worker's watch stops it

    with db.session() as session:  # the third one's worker stops heartbeating
        stale = utcnow() - timedelta(seconds=settings.job_heartbeat_timeout_s + 5)
        session.execute(update(Job).where(Job.id == jobs[2]).values(heartbeat_at=stale))
    assert round_(db, dispatcher) == []
    lost = row(db, jobs[2])
    assert (lost.status, lost.queue, lost.released_at) == ("queued", "bigmem", None)  # back, waiting for an admin
    assert client.get(f"/api/v1/jobs/{jobs[2]}", headers=alice).get_json()["waiting"]["reason"] == (
        "queue_not_configured"
    )


def test_an_admin_moves_them_each_checked_against_the_new_queue(db, client, old_client, alice, settings):
    script = upload(old_client, alice, SCRIPT, "train.py").get_json()["id"]
    classic = submit(old_client, alice, {**CLASSIC, "queue": "bigmem"})
    code = submit(old_client, alice, {"code": {"source": script}, "resources": {"memory_mb": 4096}, "queue": "bigmem"})
    gpu = submit(old_client, alice, {**NETWORK, "queue": "a100"})
    big_gpu = submit(old_client, alice, {**NETWORK, "queue": "a100", "resources": {"gpu_memory_mb": 30000}})
    with db.session() as session:
        with pytest.raises(ValueError, match="there is no queue 'bigmem'"):
            removed_queues.move(session, settings, "a100", "bigmem", "root")
        moved = removed_queues.move(session, settings, "bigmem", "small", "root")
    assert moved.moved == [classic] and moved.shortened == {classic: 600}  # small's largest time limit
    assert moved.stayed == {code: "resources.memory_mb may be at most 1024 on queue small"}
    assert (row(db, classic).queue, row(db, classic).time_limit_s, row(db, code).queue) == ("small", 600, "bigmem")

    heartbeat(db, "t4w", "t4", concurrency=4, gpu_memory_mb=16000, gpu_name="T4")
    with db.session() as session:
        wrong_device = removed_queues.move(session, settings, "a100", "small", "root")
        to_t4 = removed_queues.move(session, settings, "a100", "t4", "root")
    assert set(wrong_device.stayed) == {gpu, big_gpu} and not wrong_device.moved
    assert "runs on the GPU" in wrong_device.stayed[gpu]
    assert to_t4.moved == [gpu] and "largest GPU online" in to_t4.stayed[big_gpu]

    with db.session() as session:
        audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "move_queue").order_by(AuditEntry.id))
        first = next(iter(audit))
        assert (first.actor, first.target, first.details["to"]) == ("root", "bigmem", "small")
        assert first.details["moved"] == [classic] and code in first.details["stayed"]
    said = [e.data for e in events(db, classic) if e.type == "status"][-1]
    assert (said["status"], said["queue"], said["by"]) == ("queued", "small", "root")
    assert said["reason"] == "moved from queue bigmem to queue small"
    view = client.get(f"/api/v1/jobs/{classic}", headers=alice).get_json()
    assert (view["queue"], view["position"], view["waiting"]) == ("small", 1, None)
    heartbeat(db, "small1", "small", concurrency=1)
    released = round_(db, Dispatcher(settings, make_celery(settings)))
    assert sorted(released) == sorted([classic, gpu])  # each sent in its new queue; the others stay


def test_an_admin_cancels_the_queued_jobs_of_a_removed_queue_only(db, old_client, alice, before, settings):
    queued = submit(old_client, alice, {**CLASSIC, "queue": "bigmem"})
    running = submit(old_client, alice, {**CLASSIC, "queue": "bigmem"})
    with db.session() as session:
        assert lifecycle.claim(session, running, "big1")
    with db.session() as session:
        with pytest.raises(ValueError, match="queue small is configured"):
            removed_queues.cancel(session, settings, "small", "root")
        assert removed_queues.cancel(session, settings, "bigmem", "root") == [queued]
    assert (row(db, queued).status, row(db, running).status) == ("cancelled", "running")
    said = [e.data for e in events(db, queued) if e.type == "status"][-1]
    assert said == {"status": "cancelled", "by": "root", "reason": "queue bigmem is no longer configured"}
    with db.session() as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "cancel_queue"))
        assert (entry.actor, entry.target, entry.details) == ("root", "bigmem", {"cancelled": [queued]})
