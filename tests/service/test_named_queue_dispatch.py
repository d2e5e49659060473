"""The dispatcher on named queues LABTRAIN_QUEUES adds (PostgreSQL and Redis): each round covers
them, a named queue's jobs go to the workers serving it and to its own broker queue, fair share
and per-user limits hold within it, and a named GPU queue packs its jobs onto its workers' GPUs."""

from __future__ import annotations

import dataclasses
import json

import pytest
import redis
from sqlalchemy import select

from service.core.broker import celery_queues, make_celery, worker_queue
from service.core.orm import Job, User
from service.dispatcher import Dispatcher
from service.jobs import lifecycle
from service.jobs.limits import running_limit, set_limits
from service.lab.users import create_user
from tests.service.test_dispatcher import finish, round_, start
from tests.support.workers import heartbeat

SPEC = {"dataset": "iris", "algorithm": "knn"}
QUEUES = {
    "bigmem": {"backend": "celery", "max": {"memory_mb": 64000}},
    "short": {"backend": "celery", "max_running": 2},
    "a100": {"backend": "celery", "device": "gpu"},
}


@pytest.fixture
def settings(settings):
    return dataclasses.replace(settings, queues=json.dumps(QUEUES))


@pytest.fixture(autouse=True)
def empty_broker_queues(settings):
    """The session's Redis is shared by the dispatcher tests: leave no message in it."""
    yield
    names = [*celery_queues(settings), worker_queue("g1")]
    redis.Redis.from_url(settings.broker_url).delete(*names)


@pytest.fixture
def dispatcher(settings):
    return Dispatcher(settings, make_celery(settings), name="test-dispatcher")


@pytest.fixture
def lab(db):
    with db.session() as session:
        users = {name: create_user(session, name)[0] for name in ("anna", "ben")}

    def submit(name: str, queue: str, count: int = 1, gpu_memory_mb: int | None = None) -> list[str]:
        with db.session() as session:
            owner = session.get(User, users[name].id)
            return [
                lifecycle.create_job(
                    session, owner, family="classic", spec=SPEC, queue=queue, name=None, gpu_memory_mb=gpu_memory_mb
                ).id
                for _ in range(count)
            ]

    return users, submit


def sent_to(settings, queue: str) -> list[str]:
    bodies = [json.loads(m) for m in redis.Redis.from_url(settings.broker_url).lrange(queue, 0, -1)]
    return sorted(json.loads(b["headers"]["argsrepr"].replace("'", '"'))[0] for b in bodies)


def test_celery_serves_the_named_queues_whose_backend_is_celery(settings):
    assert celery_queues(settings) == ["cpu", "gpu", "bigmem", "short", "a100"]
    assert [q.name for q in make_celery(settings).conf.task_queues] == celery_queues(settings)


def test_a_named_queues_jobs_go_only_to_its_workers_and_its_broker_queue(db, dispatcher, lab, settings):
    _users, submit = lab
    cpu = submit("anna", "cpu")
    big = submit("ben", "bigmem", count=2)
    heartbeat(db, "cpu1", "cpu", concurrency=4)
    assert round_(db, dispatcher) == cpu  # a cpu worker takes nothing of bigmem
    heartbeat(db, "big1", "bigmem", concurrency=1)
    assert round_(db, dispatcher) == big[:1]
    assert sent_to(settings, "bigmem") == big[:1] and sent_to(settings, "cpu") == cpu
    start(db, big[0])
    finish(db, big[0])
    assert round_(db, dispatcher) == big[1:]


def test_fair_share_alternates_two_students_within_a_named_queue(db, dispatcher, lab):
    _users, submit = lab
    anna = submit("anna", "bigmem", count=3)
    ben = submit("ben", "bigmem", count=3)
    heartbeat(db, "big1", "bigmem", concurrency=6)
    released = round_(db, dispatcher)  # in the order fair share sends them
    owners = ["anna" if job in anna else "ben" for job in released]
    assert sorted(released) == sorted(anna + ben)
    assert owners in (["anna", "ben"] * 3, ["ben", "anna"] * 3), owners


def test_a_named_queues_running_limit_is_its_own_or_its_devices(db, dispatcher, lab, settings):
    users, submit = lab
    with db.session() as session:
        anna = session.get(User, users["anna"].id)
        assert running_limit(settings, anna.limits, "short") == 2  # its own max_running
        assert running_limit(settings, anna.limits, "bigmem") == settings.max_running_cpu  # a CPU queue's
        assert running_limit(settings, anna.limits, "a100") == settings.max_running_gpu  # a GPU queue's
        set_limits(session, anna, {"max_running_cpu": 1}, actor="root")
    short = submit("anna", "short", count=3)
    big = submit("anna", "bigmem", count=2)
    heartbeat(db, "w1", "short", concurrency=5)
    heartbeat(db, "w2", "bigmem", concurrency=5)
    released = round_(db, dispatcher)
    assert sorted(released) == sorted([*short[:2], big[0]])  # 2 on short; bigmem follows her cpu override


def test_a_named_gpu_queue_packs_its_jobs_onto_its_workers_gpus(db, dispatcher, lab, settings):
    _users, submit = lab
    jobs = submit("anna", "a100", gpu_memory_mb=30000) + submit("ben", "a100", gpu_memory_mb=30000)
    heartbeat(db, "g1", "a100", concurrency=4, gpu_memory_mb=40000, gpu_name="A100")
    assert round_(db, dispatcher) == jobs[:1]  # the second does not fit beside it on the GPU
    with db.session() as session:
        placed = session.get(Job, jobs[0])
        assert (placed.worker, placed.gpu_share) == ("g1", pytest.approx(0.75))
    assert sent_to(settings, worker_queue("g1")) == jobs[:1]  # that worker's own queue


def test_an_admin_overrides_a_named_queues_running_limit_for_one_user(db, dispatcher, lab, settings, client):
    users, submit = lab
    with db.session() as session:
        anna = session.get(User, users["anna"].id)
        set_limits(session, anna, {"max_running_queue.short": 3}, actor="root", settings=settings)
        assert running_limit(settings, anna.limits, "short") == 3  # over the queue's own 2
        assert running_limit(settings, session.get(User, users["ben"].id).limits, "short") == 2
        for changes, message in [
            ({"max_running_queue.nope": 1}, "there is no named queue 'nope'; the named queues here are bigmem"),
            ({"max_running_queue.cpu": 1}, "--max-running-cpu"),
            ({"max_running_queue.short": -1}, "must not be negative"),
        ]:
            with pytest.raises(ValueError, match=message):
                set_limits(session, anna, changes, actor="root", settings=settings)
    anna_jobs, ben_jobs = submit("anna", "short", count=4), submit("ben", "short", count=3)
    heartbeat(db, "w1", "short", concurrency=10)
    released = round_(db, dispatcher)
    assert sorted(released) == sorted(anna_jobs[:3] + ben_jobs[:2])
    with db.session() as session:
        token = create_user(session, "cleo")[1]
        cleo = session.scalar(select(User).where(User.name == "cleo"))
        set_limits(session, cleo, {"max_running_queue.a100": 5}, actor="root", settings=settings)
    shown = client.get("/api/v1/queue", headers={"Authorization": f"Bearer {token}"}).get_json()["queues"]
    assert (shown["a100"]["your_max_running"], shown["short"]["your_max_running"]) == (5, 2)
    with db.session() as session:  # dropped: the queue's own (a GPU queue's: the device's) again
        cleo = session.scalar(select(User).where(User.name == "cleo"))
        set_limits(session, cleo, {"max_running_queue.a100": None}, actor="root")
        assert running_limit(settings, cleo.limits, "a100") == settings.max_running_gpu and cleo.limits is None
