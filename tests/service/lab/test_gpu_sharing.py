"""Sharing GPUs among small jobs, on PostgreSQL and Redis with simulated GPU workers (heartbeats
that claim a GPU of a given size): the dispatcher packs jobs by memory and sends each to the
worker whose GPU it was placed on, never over-commits a GPU, keeps fair-share order, counts
GPU-seconds by the share of the GPU held, puts debug jobs first and asks a running batch job
to yield for a debug job that waited too long."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from datetime import timedelta

import pytest
import redis
from sqlalchemy import select, update

from service.core.broker import make_celery, worker_queue
from service.core.orm import Job, JobEvent, User, utcnow
from service.dispatcher import Dispatcher
from service.jobs import lifecycle
from service.jobs.limits import set_limits
from service.lab.fair_share import queue_order, usage_by_owner
from service.lab.users import create_user
from tests.support.workers import heartbeat

NETWORK = {"dataset": "mnist", "framework": "pytorch", "network": {"preset": "feedforward"}}


@pytest.fixture
def dispatcher(settings):
    yield Dispatcher(settings, make_celery(settings), name="test-dispatcher")
    redis.Redis.from_url(settings.broker_url).flushdb()  # what it sent has no worker to take it


@pytest.fixture
def lab(db):
    with db.session() as session:
        users = {name: create_user(session, name)[0].id for name in ("anna", "ben")}
        for user_id in users.values():  # one student may fill a GPU here; the limits have tests of their own
            set_limits(session, session.get(User, user_id), {"max_running_gpu": 50, "max_running_cpu": 50}, "root")

    def submit(name, gpu_memory_mb, count=1, tier="batch", family="network", queue="gpu"):
        with db.session() as session:
            owner = session.get(User, users[name])
            return [
                lifecycle.create_job(
                    session,
                    owner,
                    family=family,
                    spec=NETWORK,
                    queue=queue,
                    name=None,
                    tier=tier,
                    gpu_memory_mb=gpu_memory_mb if queue == "gpu" else None,
                ).id
                for _ in range(count)
            ]

    def gpu_worker(name, memory_mb, concurrency, queue="gpu"):
        heartbeat(db, name, queue, concurrency, memory_mb, "NVIDIA H200" if queue == "gpu" else None)

    return users, submit, gpu_worker


def round_(db, dispatcher):
    with db.session() as session:
        return dispatcher.run_round(session)


def placed(db):
    """Each worker's jobs on it (sent or running) with their memory."""
    on = defaultdict(list)
    with db.session() as session:
        for job in session.scalars(select(Job).where(Job.worker.is_not(None))):
            on[job.worker].append(job.gpu_memory_mb)
    return on


def test_jobs_are_packed_by_memory_onto_the_gpu_they_fit_best_and_sent_to_its_worker(db, dispatcher, lab, settings):
    _users, submit, gpu_worker = lab
    gpu_worker("gpu-big", 40_000, concurrency=8)
    gpu_worker("gpu-small", 16_000, concurrency=8)
    jobs = submit("anna", 6_000, count=10)
    released = round_(db, dispatcher)
    on = placed(db)
    # Best fit: the small card fills first (two jobs, 4 GB left), then the big one (six, 4 GB left).
    assert sorted(map(len, on.values())) == [2, 6] and len(released) == 8 and released == jobs[:8]
    assert sum(on["gpu-small"]) == 12_000 and sum(on["gpu-big"]) == 36_000
    assert round_(db, dispatcher) == []  # 4 GB left on each: the last two 6 GB jobs wait
    sent = redis.Redis.from_url(settings.broker_url)
    for worker in ("gpu-big", "gpu-small"):
        bodies = [json.loads(m) for m in sent.lrange(worker_queue(worker), 0, -1)]
        assert len(bodies) == len(on[worker])
    assert sent.llen("gpu") == 0  # nothing goes to the shared queue, where any worker could take it
    with db.session() as session:
        shares = {j.worker: j.gpu_share for j in session.scalars(select(Job).where(Job.id.in_(released)))}
    assert shares == {"gpu-big": pytest.approx(6_000 / 40_000), "gpu-small": pytest.approx(6_000 / 16_000)}


def test_a_job_that_fits_no_gpu_now_waits_while_smaller_ones_behind_it_go(db, dispatcher, lab):
    _users, submit, gpu_worker = lab
    gpu_worker("gpu-a", 24_000, concurrency=4)
    first = submit("anna", 16_000)
    assert round_(db, dispatcher) == first
    big, small = submit("anna", 12_000)[0], submit("anna", 4_000)[0]
    assert round_(db, dispatcher) == [small]  # 8 GB free: the 12 GB job waits, the 4 GB one fits
    assert sum(placed(db)["gpu-a"]) == 20_000
    with db.session() as session:
        attempt = lifecycle.claim(session, first[0], "gpu-a")
        assert lifecycle.finish(session, first[0], lifecycle.SUCCEEDED, attempt=attempt)
    assert round_(db, dispatcher) == [big]


def test_a_gpu_takes_no_more_jobs_than_its_worker_has_slots(db, dispatcher, lab):
    _users, submit, gpu_worker = lab
    gpu_worker("gpu-a", 80_000, concurrency=3)
    submit("anna", 1_000, count=5)
    assert len(round_(db, dispatcher)) == 3
    assert round_(db, dispatcher) == []


def test_fair_share_counts_gpu_seconds_by_the_share_of_the_gpu_held(db, dispatcher, lab, settings):
    users, submit, gpu_worker = lab
    gpu_worker("gpu-a", 40_000, concurrency=8)
    anna_job, ben_job = submit("anna", 20_000)[0], submit("ben", 2_000)[0]
    assert sorted(round_(db, dispatcher)) == sorted([anna_job, ben_job])
    with db.session() as session:
        for job_id in (anna_job, ben_job):
            assert lifecycle.claim(session, job_id, "gpu-a")
            session.execute(update(Job).where(Job.id == job_id).values(started_at=utcnow() - timedelta(seconds=100)))
            lifecycle.finish(session, job_id, lifecycle.SUCCEEDED)
    with db.session() as session:
        usage = usage_by_owner(session, "gpu", settings.usage_half_life_s, utcnow())
    # The same 100 s each, but anna held half the card and ben a twentieth.
    assert usage[users["anna"]] == pytest.approx(10 * usage[users["ben"]], rel=0.01)
    later = submit("anna", 1_000)[0], submit("ben", 1_000)[0]
    with db.session() as session:
        assert queue_order(session, "gpu", settings)[:2] == [later[1], later[0]]


def test_debug_jobs_go_before_batch_jobs(db, lab, settings):
    _users, submit, _gpu_worker = lab
    batch = submit("ben", None, count=2, family="classic", queue="cpu")
    debug = submit("anna", None, tier="debug", family="classic", queue="cpu")
    with db.session() as session:
        assert queue_order(session, "cpu", settings) == [*debug, *batch]


def test_a_debug_job_that_waited_asks_the_latest_batch_job_to_yield(db, dispatcher, lab, settings):
    _users, submit, gpu_worker = lab
    gpu_worker("cpu-1", None, concurrency=3, queue="cpu")
    classic = submit("ben", None, family="classic", queue="cpu")[0]  # cannot checkpoint: never asked
    older, newer = submit("ben", None, count=2, queue="cpu")
    assert len(round_(db, dispatcher)) == 3
    with db.session() as session:
        for minutes, job_id in ((3, classic), (2, older), (1, newer)):
            assert lifecycle.claim(session, job_id, "cpu-1")
            session.execute(
                update(Job).where(Job.id == job_id).values(started_at=utcnow() - timedelta(minutes=minutes))
            )
    debug = submit("anna", None, tier="debug", queue="cpu")[0]
    assert round_(db, dispatcher) == []  # no slot, and it has not waited long enough yet
    with db.session() as session:
        assert not session.scalar(select(Job.preempt_requested).where(Job.id == newer))
        session.execute(
            update(Job)
            .where(Job.id == debug)
            .values(created_at=utcnow() - timedelta(seconds=settings.preempt_after_s + 1))
        )
    round_(db, dispatcher)
    round_(db, dispatcher)  # asked once: the job already yielding makes room for the one debug job
    with db.session() as session:
        asked = {j.id: j.preempt_requested for j in session.scalars(select(Job).where(Job.status == "running"))}
        note = session.scalars(select(JobEvent).where(JobEvent.job_id == newer, JobEvent.type == "log")).all()
    assert asked == {classic: False, older: False, newer: True}
    assert [e.data["preempted_by"] for e in note] == [debug]
    with db.session() as session:  # the worker yields after its checkpoint: back in the queue, no attempt spent
        assert lifecycle.requeue_preempted(session, newer, attempt=1)
    assert round_(db, dispatcher) == [debug]
    with db.session() as session:
        job = session.get(Job, newer)
        assert (job.status, job.attempt, job.preemptions, job.preempt_requested) == ("queued", 0, 1, False)


def test_a_light_users_batch_job_that_waited_may_take_a_heavy_users_slot(db, dispatcher, lab, settings):
    users, submit, gpu_worker = lab
    gpu_worker("cpu-1", None, concurrency=1, queue="cpu")
    with db.session() as session:  # ben trained all morning; anna not at all today
        old = lifecycle.create_job(
            session, session.get(User, users["ben"]), family="network", spec=NETWORK, queue="cpu", name=None
        )
        assert lifecycle.claim(session, old.id, "cpu-1")
        session.execute(update(Job).where(Job.id == old.id).values(started_at=utcnow() - timedelta(hours=6)))
        assert lifecycle.finish(session, old.id, lifecycle.SUCCEEDED)
    running = submit("ben", None, queue="cpu")[0]
    assert round_(db, dispatcher) == [running]
    with db.session() as session:
        assert lifecycle.claim(session, running, "cpu-1")
    waiting = submit("anna", None, queue="cpu")[0]
    with db.session() as session:
        session.execute(
            update(Job)
            .where(Job.id == waiting)
            .values(created_at=utcnow() - timedelta(seconds=settings.preempt_after_s + 1))
        )
    strict = Dispatcher(replace(settings, preempt_usage_gap_s=7 * 3600), make_celery(settings))
    round_(db, strict)  # the gap asked is more than ben has used: nobody is asked
    with db.session() as session:
        assert not session.get(Job, running).preempt_requested
    round_(db, Dispatcher(replace(settings, preempt_usage_gap_s=3600), make_celery(settings)))  # ben: ~5.9 h more
    with db.session() as session:
        assert session.get(Job, running).preempt_requested
        note = session.scalars(select(JobEvent).where(JobEvent.job_id == running, JobEvent.type == "log")).one()
    assert note.data["preempted_by"] == waiting and "used the queue much less" in note.data["message"]
