"""The dispatcher on PostgreSQL and Redis: slots, fair share, per-user limits, lost workers,
lost messages, and two dispatchers at once."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from types import SimpleNamespace

import pytest
import redis
from sqlalchemy import delete, select, update

from service import dispatcher as dispatcher_module
from service.core import wakeups
from service.core.broker import make_celery, make_request_sender
from service.core.orm import DispatchLock, Job, JobEvent, User, utcnow
from service.dispatcher import Dispatcher, refillable
from service.jobs import lifecycle
from service.jobs.limits import set_limits
from service.lab.fair_share import place_without_the_line, queue_order, usage_by_owner
from service.lab.users import create_user
from tests.conftest import free_port
from tests.support import wake_ups
from tests.support.sql import statements
from tests.support.workers import heartbeat

SPEC = {"dataset": "iris", "algorithm": "knn"}


@pytest.fixture
def dispatcher(settings):
    return Dispatcher(settings, make_celery(settings), name="test-dispatcher")


@pytest.fixture
def lab(db):
    """Three students and a helper to submit jobs and to register workers."""
    with db.session() as session:
        users = {name: create_user(session, name)[0] for name in ("anna", "ben", "cleo")}

    def submit(name: str, queue: str = "gpu", count: int = 1) -> list[str]:
        with db.session() as session:
            owner = session.get(User, users[name].id)
            return [
                lifecycle.create_job(session, owner, family="classic", spec=SPEC, queue=queue, name=None).id
                for _ in range(count)
            ]

    def worker(queue: str = "gpu", concurrency: int = 1, name: str = "w1") -> None:
        heartbeat(db, name, queue, concurrency)

    return users, submit, worker


def round_(db, dispatcher) -> list[str]:
    with db.session() as session:
        return dispatcher.run_round(session)


def start(db, job_id: str, seconds_ago: float = 0.0) -> None:
    """A worker takes the job (and, for usage, started it `seconds_ago`)."""
    with db.session() as session:
        assert lifecycle.claim(session, job_id, "w1")
        session.execute(
            update(Job).where(Job.id == job_id).values(started_at=utcnow() - timedelta(seconds=seconds_ago))
        )


def finish(db, job_id: str) -> None:
    with db.session() as session:
        lifecycle.finish(session, job_id, lifecycle.SUCCEEDED)


def test_jobs_are_sent_only_to_free_slots_with_only_their_id(db, dispatcher, lab, settings):
    _users, submit, worker = lab
    broker = redis.Redis.from_url(settings.broker_url)
    earlier = broker.llen("cpu")  # the session's broker: other tests' messages, behind the new ones
    ids = submit("anna", queue="cpu", count=3)
    assert round_(db, dispatcher) == []  # no worker online: nothing is sent
    worker("cpu", concurrency=2)
    assert round_(db, dispatcher) == ids[:2]
    assert round_(db, dispatcher) == []  # both slots taken until a job ends
    bodies = [json.loads(m) for m in broker.lrange("cpu", 0, broker.llen("cpu") - earlier - 1)]
    assert sorted(json.loads(b["headers"]["argsrepr"].replace("'", '"'))[0] for b in bodies) == sorted(ids[:2])
    start(db, ids[0])
    finish(db, ids[0])
    assert round_(db, dispatcher) == [ids[2]]


def test_fair_share_puts_light_users_before_heavy_ones(db, dispatcher, lab, settings):
    users, submit, worker = lab
    worker("gpu")
    anna = submit("anna", count=20)
    assert round_(db, dispatcher) == [anna[0]]
    start(db, anna[0], seconds_ago=30)
    ben, cleo = submit("ben")[0], submit("cleo")[0]
    with db.session() as session:
        order = queue_order(session, "gpu", settings)
    assert order[:3] == [ben, cleo, anna[1]]  # anna has used the GPU; ben and cleo have not
    finish(db, anna[0])
    assert round_(db, dispatcher) == [ben]
    start(db, ben, seconds_ago=5)
    finish(db, ben)
    assert round_(db, dispatcher) == [cleo]
    with db.session() as session:
        usage = usage_by_owner(session, "gpu", settings.usage_half_life_s, utcnow())
    assert usage[users["anna"].id] > usage[users["ben"].id] > 0


def test_one_owners_waiting_jobs_go_in_their_own_order_without_reading_usage(db, lab, settings):
    """With one owner waiting (a student's burst) there is no one to be fair between: the order
    is tier, priority, age, as with others waiting, and the lab's usage is not read for it."""
    users, submit, _worker = lab
    old = submit("ben")[0]
    start(db, old, seconds_ago=600)  # usage in the lab, which the order must not need
    finish(db, old)
    batch, urgent, debug = submit("anna", count=3)
    with db.session() as session:
        session.execute(update(Job).where(Job.id == urgent).values(priority=5))
        session.execute(update(Job).where(Job.id == debug).values(tier="debug"))
    with db.session() as session, statements(db) as seen:
        alone = queue_order(session, "gpu", settings)
    assert alone == [debug, urgent, batch]
    assert len(seen) == 1, seen  # the queued jobs' columns; no usage
    other = submit("cleo")[0]  # two owners: fair share places them, reading the usage
    with db.session() as session, statements(db) as seen:
        both = queue_order(session, "gpu", settings)
    assert [job for job in both if job != other] == [debug, urgent, batch]
    assert any("started_at" in statement for statement in seen)


def test_usage_decays_with_its_half_life(db, lab, settings):
    users, submit, _worker = lab
    job = submit("anna")[0]
    start(db, job, seconds_ago=2 * 3600)
    with db.session() as session:
        session.execute(update(Job).where(Job.id == job).values(finished_at=utcnow() - timedelta(seconds=3600)))
        usage = usage_by_owner(session, "gpu", 3600.0, utcnow())[users["anna"].id]
    # an hour of GPU that ended an hour ago, halving every hour: 3600 * (0.5 - 0.25) / ln 2
    assert usage == pytest.approx(3600 * 0.25 / 0.6931471805599453, rel=1e-3)


def test_a_requeued_job_counts_no_usage_while_it_waits(db, lab):
    users, submit, _worker = lab
    job_id = submit("anna")[0]
    start(db, job_id, seconds_ago=600)
    with db.session() as session:
        assert usage_by_owner(session, "gpu", 3600.0, utcnow())[users["anna"].id] > 500
        lifecycle.requeue(session, session.get(Job, job_id), "worker w1 lost")
    with db.session() as session:
        assert users["anna"].id not in usage_by_owner(session, "gpu", 3600.0, utcnow())


def test_per_user_running_limit_and_admin_override(db, dispatcher, lab):
    users, submit, worker = lab
    worker("gpu", concurrency=3)
    anna = submit("anna", count=3)
    assert round_(db, dispatcher) == [anna[0]]  # default: one running GPU job per user
    with db.session() as session:
        set_limits(session, session.get(User, users["anna"].id), {"max_running_gpu": 2}, actor="root")
    assert round_(db, dispatcher) == [anna[1]]
    with db.session() as session:
        audit = [e.data for e in session.scalars(select(JobEvent).where(JobEvent.job_id == anna[2]))]
    assert any(d.get("audit") == "set_limits" and d["by"] == "root" for d in audit)


def test_two_dispatchers_never_release_a_job_twice(db, settings, lab):
    _users, submit, worker = lab
    worker("cpu", concurrency=10)
    submit("anna", queue="cpu", count=4)
    submit("ben", queue="cpu", count=4)
    with db.session() as session:
        set_limits(session, session.scalar(select(User).where(User.name == "anna")), {"max_running_cpu": 10}, "root")
        set_limits(session, session.scalar(select(User).where(User.name == "ben")), {"max_running_cpu": 10}, "root")
    dispatchers = [Dispatcher(settings, make_celery(settings), name=f"d{i}") for i in range(4)]

    def go(d):
        released = []
        for _ in range(5):
            released += round_(db, d)
        return released

    with ThreadPoolExecutor(4) as pool:
        released = sum(pool.map(go, dispatchers), [])
    assert len(released) == len(set(released)) == 8


def test_the_lock_and_the_workers_online_are_one_statement_and_a_lost_lock_row_is_made_again(db, dispatcher, lab):
    """On PostgreSQL a round (and a submit's release, and a refill) takes the lock and reads the
    workers online in one round trip; where the lock's row was deleted, it is made again first."""
    _users, submit, worker = lab
    worker("cpu", concurrency=1, name="w1")
    worker("cpu", concurrency=1, name="w2")
    first, second = submit("anna", queue="cpu")[0], submit("ben", queue="cpu")[0]
    with db.session() as session:
        session.execute(delete(DispatchLock))
    assert round_(db, dispatcher) == [first, second]  # both workers were seen
    with db.session() as session:
        assert session.get(DispatchLock, 1).holder == "test-dispatcher"
    third = submit("cleo", queue="cpu")[0]
    worker("cpu", concurrency=2, name="w2")
    with statements(db) as seen:
        assert round_(db, dispatcher) == [third]  # w2's second slot
    locks = [s for s in seen if "dispatch_lock" in s]
    workers = [s for s in seen if "workers.heartbeat_at >=" in s]  # the look for those online
    if db.url.startswith("postgresql"):
        assert len(locks) == 1 and locks == workers, seen
    else:
        assert len(locks) == len(workers) == 1 and locks != workers, seen


def test_a_job_whose_worker_stopped_heartbeating_is_requeued_then_failed(db, dispatcher, lab, settings):
    _users, submit, worker = lab
    worker("gpu")
    job_id = submit("anna")[0]
    with db.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(max_attempts=2))
    assert round_(db, dispatcher) == [job_id]
    for attempt in (1, 2):
        start(db, job_id)
        with db.session() as session:  # the worker dies: its heartbeat gets old
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(heartbeat_at=utcnow() - timedelta(seconds=settings.job_heartbeat_timeout_s + 1))
            )
        released = round_(db, dispatcher)
        with db.session() as session:
            job = session.get(Job, job_id)
            assert job.attempt == attempt
            # re-queued (and sent by the next round), until the attempts are spent
            assert (job.status, released) == (("queued", []) if attempt == 1 else ("failed", []))
        if attempt == 1:
            assert round_(db, dispatcher) == [job_id]
    assert job.error_code == "worker_lost" and "2 attempts" in job.error
    with db.session() as session:  # the first attempt, if it were still alive, could not finish it
        assert not lifecycle.finish(session, job_id, lifecycle.SUCCEEDED, attempt=1)


def test_a_job_requeued_from_a_lost_worker_is_sent_after_its_requeue_commits(db, dispatcher, lab, settings):
    _users, submit, worker = lab
    worker("cpu")
    job_id = submit("anna", queue="cpu")[0]
    assert round_(db, dispatcher) == [job_id]
    start(db, job_id)
    broker = redis.Redis.from_url(settings.broker_url)
    broker.delete("cpu")  # the worker took the first message
    with db.session() as session:  # the worker dies: its heartbeat gets old
        stale = utcnow() - timedelta(seconds=settings.job_heartbeat_timeout_s + 1)
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=stale))
    # Sent inside the round that requeues it, a worker's claim could run before the round
    # commits, see the job still running, and drop it: the round sends nothing.
    assert round_(db, dispatcher) == []
    assert broker.llen("cpu") == 0
    assert round_(db, dispatcher) == [job_id]  # the next round, which the requeue's commit wakes
    assert any(job_id in m.decode() for m in broker.lrange("cpu", 0, -1))
    with db.session() as session:
        assert lifecycle.claim(session, job_id, "w1")


def test_a_message_the_broker_lost_is_sent_again(db, dispatcher, lab, settings):
    _users, submit, worker = lab
    worker("cpu")
    job_id = submit("anna", queue="cpu")[0]
    assert round_(db, dispatcher) == [job_id]
    client = redis.Redis.from_url(settings.broker_url)
    client.flushdb()  # as a restarted Redis without persistence would be
    with db.session() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(released_at=utcnow() - timedelta(seconds=settings.resend_after_s + 1))
        )
    round_(db, dispatcher)
    assert any(job_id in m.decode() for m in client.lrange("cpu", 0, -1))


def test_queued_limit_is_a_429_naming_it(client, alice, settings):
    from tests.support.api import IRIS_KNN, assert_error

    for _ in range(settings.max_queued):
        assert client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).status_code == 201
    error = assert_error(client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice), 429, "max_queued", "limit_reached")
    assert "limit is 20" in error["message"]


def test_a_round_reads_the_jobs_once_and_a_look_at_a_full_queue_takes_no_lock(db, dispatcher, lab):
    _users, submit, worker = lab
    worker("cpu", concurrency=1)
    first, second = submit("anna", queue="cpu")[0], submit("ben", queue="cpu")[0]
    with statements(db) as seen, db.session() as session:
        assert dispatcher.round_needed(session)
        assert dispatcher.run_round(session) == [first]
    # The look, the round's one read of the queued and running jobs, and fair share's usage
    # (two owners wait): not a read per step of the round and per queue.
    assert sum(" FROM jobs" in s for s in seen) == 3, seen
    with statements(db) as seen, db.session() as session:
        assert not dispatcher.round_needed(session)  # the one slot is taken: nothing to do
    assert not [s for s in seen if not s.startswith("SELECT")], seen
    assert round_(db, dispatcher) == []  # as the round itself finds
    start(db, first)
    finish(db, first)
    with db.session() as session:
        assert dispatcher.round_needed(session)
        assert dispatcher.run_round(session) == [second]


def test_a_worker_refills_the_slot_its_job_freed_in_fair_share_order_and_unsent(db, dispatcher, lab, settings):
    """The worker's process takes the next job itself, by the round's rule, released to it with no
    broker message; a round after it sees the slot taken."""
    _users, submit, worker = lab
    worker("cpu")
    refiller = Dispatcher(settings, None, name="w1", slurm=False)
    anna = submit("anna", queue="cpu", count=2)
    assert round_(db, dispatcher) == [anna[0]]
    messages = redis.Redis.from_url(settings.broker_url).llen("cpu")  # the round's for anna's first, after others'
    start(db, anna[0], seconds_ago=30)
    ben = submit("ben", queue="cpu")[0]
    with db.session() as session:
        assert refiller.refill(session, "w1", ["cpu"]) is None  # its job still runs: no slot is free
    finish(db, anna[0])
    with db.session() as session:
        assert _refill(refiller, session) == ben  # anna has used the CPU; ben has not
    with db.session() as session:
        taken = session.get(Job, ben)
        assert (taken.status, taken.worker) == ("running", "w1") and taken.released_at == taken.started_at
        assert session.get(Job, anna[1]).released_at is None
    assert redis.Redis.from_url(settings.broker_url).llen("cpu") == messages  # none for ben's
    with db.session() as session:
        assert refiller.refill(session, "w1", ["cpu"]) is None  # ben's job holds the one slot
    assert round_(db, dispatcher) == []


def test_a_refill_keeps_running_limits_and_leaves_gpu_queues_alone(db, lab, settings):
    users, submit, worker = lab
    worker("cpu", concurrency=2)
    worker("gpu", name="g1")
    refiller = Dispatcher(settings, None, name="w1", slurm=False)
    with db.session() as session:
        set_limits(session, session.get(User, users["anna"].id), {"max_running_cpu": 1}, actor="root")
    running, held = submit("anna", queue="cpu", count=2)
    start(db, running)
    with db.session() as session:
        assert refiller.refill(session, "w1", ["cpu"]) is None  # a slot is free, but anna has hers running
    submit("ben", queue="gpu")
    with db.session() as session:
        assert refiller.refill(session, "g1", ["gpu"]) is None  # packed by memory: the dispatcher's
        assert session.get(Job, held).released_at is None


def test_a_refill_reads_each_owners_next_job_not_the_whole_queue(db, lab, settings):
    """The next job is fair share's first, which only the head of each owner's line decides: a
    refill reads those and the jobs that hold a slot, however many wait behind them."""
    _users, submit, worker = lab
    worker("cpu", concurrency=2)
    refiller = Dispatcher(settings, None, name="w1", slurm=False)
    anna = submit("anna", queue="cpu", count=20)
    with db.session() as session:
        session.execute(update(Job).where(Job.id == anna[7]).values(priority=5))
    ben = submit("ben", queue="cpu", count=3)
    with statements(db) as seen, db.session() as session:
        assert refiller.refill(session, "w1", ["cpu"]) == anna[7]  # no usage yet: the oldest owner's first
        lifecycle.claim_job(session, anna[7], "w1", released=True)  # as its worker's process does
    reads = [s for s in seen if s.startswith("SELECT") and " FROM jobs" in s]
    # The look whether anything waits, the slot holders with each line's head, and fair share's
    # usage (two owners wait); none reads the whole line.
    assert [("LIMIT" in s, "row_number()" in s and "UNION ALL" in s, "started_at IS NOT NULL" in s) for s in reads] == [
        (True, False, False),
        (False, True, False),
        (False, False, True),
    ], reads
    with db.session() as session:
        following = queue_order(session, "cpu", settings)[0]  # anna's runs: the whole line's order
        assert following in anna + ben
        assert _refill(refiller, session) == following
        assert refiller.refill(session, "w1", ["cpu"]) is None  # both slots are taken


def test_a_refill_whose_first_job_may_not_start_takes_the_next_by_the_whole_line(db, lab, settings):
    """Anna has used less, so her job is first, but she has her one job running: what goes instead
    depends on the line behind, which is then read (here ben's oldest, not cleo's)."""
    users, submit, worker = lab
    worker("cpu", concurrency=3)
    refiller = Dispatcher(settings, None, name="w1", slurm=False)
    with db.session() as session:
        set_limits(session, session.get(User, users["anna"].id), {"max_running_cpu": 1}, actor="root")
    used = {name: submit(name, queue="cpu")[0] for name in ("ben", "cleo")}
    for seconds, name in ((20, "ben"), (40, "cleo")):
        start(db, used[name], seconds_ago=seconds)
        finish(db, used[name])
    running = submit("anna", queue="cpu")[0]
    start(db, running)
    submit("anna", queue="cpu", count=2)
    ben, _cleo = submit("ben", queue="cpu", count=2)[0], submit("cleo", queue="cpu")[0]
    with db.session() as session:
        assert queue_order(session, "cpu", settings)[0] != ben  # anna's is first
    with statements(db) as seen, db.session() as session:
        assert refiller.refill(session, "w1", ["cpu"]) == ben
    assert any("jobs.status IN" in s and "NOT (" not in s and "place" not in s for s in seen)  # the whole line


def test_a_stopping_worker_refills_nothing_and_wakes_the_dispatcher(db, lab, settings):
    """Out of the registry (celery_app removes it when asked to stop), a worker takes no new job;
    its refill says so on the workers' channel, so the dispatcher's round fills the slot."""
    _users, submit, _worker = lab
    waiting = submit("anna", queue="cpu")[0]
    with wake_ups.heard(db, (wakeups.WORKERS,)) as heard, db.session() as session:
        assert Dispatcher(settings, None, name="w1", slurm=False).refill(session, "w1", ["cpu"]) is None
        assert session.get(Job, waiting).released_at is None
    assert heard == ([{"worker": "w1", "left": True}] if wakeups.notifies(db.url) else [])


def test_a_jobs_end_whose_worker_refills_its_slot_runs_no_round(db, dispatcher, lab):
    """The dispatcher wakes for it (a search may step), but leaves the slot to the worker; the same
    end from a worker that does not refill (a GPU worker's) is a round's."""
    _users, submit, worker = lab
    worker("cpu")
    ended, waiting = submit("anna", queue="cpu", count=2)
    assert round_(db, dispatcher) == [ended]
    start(db, ended)
    finish(db, ended)
    end = {"job": ended, "type": "status", "status": "succeeded"}
    dispatcher_module._wake_up(db, dispatcher, [], [wakeups.Wake(wakeups.JOB_EVENTS, {**end, "refill": "w1"})])
    with db.session() as session:
        assert session.get(Job, waiting).released_at is None
    dispatcher_module._wake_up(db, dispatcher, [], [wakeups.Wake(wakeups.JOB_EVENTS, end)])
    with db.session() as session:
        assert session.get(Job, waiting).released_at is not None


def test_a_new_job_in_a_queue_with_no_slot_free_needs_no_look(db, dispatcher, lab):
    """A burst's arrivals in a full queue free no slot: after a look that found nothing to do, the
    dispatcher does not look for each. A job's end (here one its worker refills) forgets that look,
    so the next arrival is looked at, and a slot freed takes a job."""
    _users, submit, worker = lab
    worker("cpu")
    listener = wakeups.Listener(db.url, (wakeups.JOB_EVENTS,)) if wakeups.notifies(db.url) else None
    if listener:
        listener.wait(0.01)  # listening before the commit
    running, waiting = submit("anna", queue="cpu", count=2)
    if listener:
        heard = []
        for _ in range(20):
            heard += [w.payload for w in listener.wait(0.5)]
            if len(heard) >= 2:
                break
        listener.close()
        assert {p["job"]: p.get("submitted") for p in heard} == {running: "cpu", waiting: "cpu"}
    assert round_(db, dispatcher) == [running]
    dispatcher_module._wake_up(db, dispatcher, [], None)  # the timer's look: nothing to do
    later = submit("ben", queue="cpu")[0]
    with statements(db) as seen:
        dispatcher_module._wake_up(db, dispatcher, [], [_arrival(later)])
    assert not [s for s in seen if " FROM jobs" in s], seen  # no look
    start(db, running)
    finish(db, running)
    end = {"job": running, "type": "status", "status": "succeeded", "refill": "w1"}
    dispatcher_module._wake_up(db, dispatcher, [], [wakeups.Wake(wakeups.JOB_EVENTS, end)])  # no round: forgets
    last = submit("cleo", queue="cpu")[0]
    dispatcher_module._wake_up(db, dispatcher, [], [_arrival(last)])  # looks: the slot is free
    with db.session() as session:
        assert sum(session.get(Job, j).released_at is not None for j in (waiting, later, last)) == 1


def test_the_end_of_a_job_its_process_took_keeps_the_look_until_the_slot_is_rung_free(db, dispatcher, lab):
    """A burst: the end of a job its worker's process took for its slot leaves that slot to the
    process, which takes the next under the round's lock (workers/refill.py); the dispatcher keeps
    its last look (the arrivals that follow need none) until the process rings the slot free."""
    _users, submit, worker = lab
    worker("cpu")
    running, waiting = submit("anna", queue="cpu", count=2)
    assert round_(db, dispatcher) == [running]
    dispatcher_module._wake_up(db, dispatcher, [], None)  # the timer's look: no slot free
    start(db, running)
    finish(db, running)
    end = {"job": running, "type": "status", "status": "succeeded", "refill": "w1", "taken": True}
    later = submit("ben", queue="cpu")[0]
    with statements(db) as seen:
        dispatcher_module._wake_up(db, dispatcher, [], [wakeups.Wake(wakeups.JOB_EVENTS, end), _arrival(later)])
    assert not [s for s in seen if " FROM jobs" in s], seen  # no look: the slot is its process's
    with db.session() as session:
        assert [session.get(Job, j).released_at for j in (waiting, later)] == [None, None]
    ring = wakeups.Wake(wakeups.WORKERS, {"worker": "w1", "slot_free": True})
    dispatcher_module._wake_up(db, dispatcher, [], [ring])  # it took none: a round fills the slot
    with db.session() as session:
        assert session.get(Job, later).released_at is not None  # ben's: anna has used the CPU


def _refill(refiller: Dispatcher, session) -> str | None:
    """A refill of w1's cpu slot as its process makes it: the job chosen, claimed in the same
    transaction, which releases it to w1 (workers/runner.py `run_taken`)."""
    job_id = refiller.refill(session, "w1", ["cpu"])
    if job_id is not None:
        assert lifecycle.claim_job(session, job_id, "w1", released=True) is not None
    return job_id


def _arrival(job_id: str) -> wakeups.Wake:
    return wakeups.Wake(wakeups.JOB_EVENTS, {"job": job_id, "type": "status", "status": "queued", "submitted": "cpu"})


def test_only_cpu_queues_on_celery_are_refilled(settings):
    named = replace(
        settings,
        queues=json.dumps(
            {
                "bigmem": {"backend": "celery"},
                "a100": {"backend": "slurm", "partition": "gpu", "device": "gpu"},
                "t4": {"backend": "celery", "device": "gpu"},
            }
        ),
    )
    assert refillable(named, ["cpu", "gpu", "bigmem", "a100", "t4", "gone"]) == ["cpu", "bigmem"]


def test_a_job_is_placed_by_a_count_where_its_owner_alone_waits(db, dispatcher, lab, settings):
    """A job's position (its submit's answer, its view) is counted where its owner alone waits,
    and is its place in the whole line's order; with others waiting the line is read."""
    _users, submit, worker = lab
    worker("gpu")
    jobs = submit("anna", count=6)
    with db.session() as session:
        session.execute(update(Job).where(Job.id == jobs[3]).values(priority=5))
        session.execute(update(Job).where(Job.id == jobs[4]).values(tier="debug"))
        session.execute(update(Job).where(Job.id == jobs[5]).values(priority=-1))
    assert round_(db, dispatcher) == [jobs[4]]  # sent; five still wait

    def places() -> tuple[list[int | None], list[str], list[str]]:
        with db.session() as session:
            loaded = [session.get(Job, job_id) for job_id in jobs]
            with statements(db) as seen:
                counted = [place_without_the_line(session, job) for job in loaded]
            return counted, queue_order(session, "gpu", settings), seen

    counted, order, seen = places()
    assert order == [jobs[4], jobs[3], jobs[0], jobs[1], jobs[2], jobs[5]]
    assert counted == [order.index(job_id) + 1 for job_id in jobs]
    # Each one statement that counts, another owner's waiting jobs too; none reads the line.
    assert len(seen) == len(jobs) and all("count(*)" in s for s in seen), seen
    cleo = submit("cleo")[0]
    counted, order, _ = places()
    assert counted == [None, None, None, None, 1, None] and cleo in order  # the sent one is still counted


def test_a_job_first_in_line_is_released_by_its_submit_into_a_free_slot(client, alice, db, settings):
    """The API's submit releases the first job of its queue's line into a free slot, by the round's
    rule and lock, and sends it; the next job waits behind it for the dispatcher, whose look then
    finds nothing it could do."""
    heartbeat(db, "w1", "cpu", concurrency=1)
    broker = redis.Redis.from_url(settings.broker_url)
    earlier = broker.llen("cpu")  # the session's broker: other tests' messages
    first = client.post("/api/v1/jobs", json=SPEC, headers=alice)
    second = client.post("/api/v1/jobs", json=SPEC, headers=alice)
    assert (first.status_code, first.json["position"]) == (201, 1)
    assert (second.status_code, second.json["position"]) == (201, 2)
    with db.session() as session:
        sent = {job.id: (job.status, job.released_at is not None, job.worker) for job in session.scalars(select(Job))}
    assert sent == {first.json["id"]: ("queued", True, None), second.json["id"]: ("queued", False, None)}
    bodies = [json.loads(m) for m in broker.lrange("cpu", 0, -1)]  # the newest first
    assert [json.loads(b["headers"]["argsrepr"].replace("'", '"'))[0] for b in bodies[: -earlier or None]] == [
        first.json["id"]
    ]
    with db.session() as session:
        assert not Dispatcher(settings, None, slurm=False).round_needed(session)


def test_an_arrival_its_submit_released_does_not_wake_the_dispatcher(client, alice, db, settings):
    """The submit that released its job itself says so in its wake-ups: the dispatcher sleeps
    through that arrival (it took a slot and left the line as it was), and wakes for the next,
    which waits for a slot."""
    heartbeat(db, "w1", "cpu", concurrency=1)
    listener = wakeups.Listener(db.url, (wakeups.JOB_EVENTS, wakeups.WORKERS)) if wakeups.notifies(db.url) else None
    commits = None if listener else wakeups.SqliteChanges(db.url)
    if listener:
        listener.wait(0.01)  # listening before the first commit
    timer = SimpleNamespace(dispatch_safety_s=600)
    stop = threading.Event()
    try:
        with ThreadPoolExecutor(1) as pool:
            woken = pool.submit(
                dispatcher_module._wait_for_a_change, listener, commits, timer, stop, starts_count=False
            )
            first = client.post("/api/v1/jobs", json=SPEC, headers=alice).json
            second = client.post("/api/v1/jobs", json=SPEC, headers=alice).json
            wakes = woken.result(timeout=60)  # the wait went on through the first arrival's wake-ups
    finally:
        stop.set()
        (listener or commits).close()
    assert wakes is not None and [w.payload.get("job") for w in wakes if w.payload.get("submitted")] == [second["id"]]
    with db.session() as session:
        assert session.get(Job, first["id"]).released_at is not None
        assert session.get(Job, second["id"]).released_at is None


def test_a_release_at_submit_is_sent_after_its_commit_and_leaves_gpu_queues_alone(db, lab, settings):
    """A worker's claim must find the new job's row, which the submit's transaction holds unseen
    until it commits: release_arrival releases, send_arrivals sends, after. A GPU job is packed by
    memory: the dispatcher's."""
    _users, submit, worker = lab
    worker("cpu", concurrency=2)
    worker("gpu", name="g1")
    arrivals = Dispatcher(settings, make_celery(settings), name="api@test", slurm=False)
    broker = redis.Redis.from_url(settings.broker_url)
    waiting = submit("anna", queue="cpu")[0]
    earlier = broker.llen("cpu")  # the session's broker: other tests' messages
    with db.session() as session:
        released = arrivals.release_arrival(session, "cpu")
        assert released == [waiting] and broker.llen("cpu") == earlier  # nothing sent before the commit
    with db.session() as session:
        assert session.get(Job, waiting).released_at is not None
    arrivals.send_arrivals(db, "cpu", released)
    assert broker.llen("cpu") == earlier + 1 and waiting in broker.lindex("cpu", 0).decode()
    gpu_job = submit("ben", queue="gpu")[0]
    with db.session() as session:
        assert arrivals.release_arrival(session, "gpu") == []
        assert session.get(Job, gpu_job).released_at is None


def test_a_job_the_broker_refuses_at_submit_waits_for_a_round_and_submits_stop_trying(db, lab, settings, monkeypatch):
    """A release whose send fails is undone and the dispatcher told (its round sends the job, with
    the broker's retries); for ARRIVALS_PAUSE_S no submit tries again, so none waits on a broker
    that does not answer."""
    _users, submit, worker = lab
    worker("cpu", concurrency=2)
    refused = replace(settings, broker_url=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    arrivals = Dispatcher(refused, make_request_sender(refused), name="api@test", slurm=False)
    job_id = submit("anna", queue="cpu")[0]
    with wake_ups.heard(db, (wakeups.WORKERS,)) as heard:
        with db.session() as session:
            released = arrivals.release_arrival(session, "cpu")
        assert released == [job_id]
        arrivals.send_arrivals(db, "cpu", released)
    assert heard == ([{"worker": "api@test", "unsent": job_id}] if wakeups.notifies(db.url) else [])
    with statements(db) as seen, db.session() as session:
        assert session.get(Job, job_id).released_at is None
        assert arrivals.release_arrival(session, "cpu") == []
    assert not [s for s in seen if "dispatch_lock" in s]  # paused: not even the lock is taken
    monkeypatch.setattr(dispatcher_module, "ARRIVALS_PAUSE_S", 0.0)  # the pause over
    with db.session() as session:
        assert arrivals.release_arrival(session, "cpu") == [job_id]
