"""`labtrain admin queue list | move | cancel` and `labtrain users limits --max-running-queue`
against the test database, with LABTRAIN_QUEUES as the deployment has it after an admin removed
a queue (`bigmem`) that still holds jobs."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from service.cli import main
from service.core.orm import AuditEntry, Job, User
from service.jobs import lifecycle
from service.lab.users import create_user

pytestmark = pytest.mark.fast  # the fast tier: no servers needed (tests/conftest.py)

QUEUES = {"short": {"backend": "celery", "max_running": 2}, "t4": {"backend": "celery", "device": "gpu"}}
CLASSIC = {"dataset": "iris", "algorithm": "knn", "device": "cpu"}


@pytest.fixture
def labtrain(settings, db):
    """Runs `labtrain ARGS` in this process with the deployment's settings in the environment."""
    runner = CliRunner()
    env = {
        "LABTRAIN_HOME": str(settings.home),
        "LABTRAIN_DATABASE_URL": settings.database_url,
        "LABTRAIN_QUEUES": json.dumps(QUEUES),
    }

    def run(*args: str, ok: bool = True):
        result = runner.invoke(main, list(args), env=env, catch_exceptions=False)
        assert (result.exit_code == 0) == ok, result.output
        return result

    return run


@pytest.fixture
def jobs(db):
    """dora's jobs in the removed queue bigmem: two queued, one running."""
    with db.session() as session:
        dora = create_user(session, "dora")[0]
        made = [
            lifecycle.create_job(session, dora, family="classic", spec=CLASSIC, queue="bigmem", name=None).id
            for _ in range(3)
        ]
    with db.session() as session:
        assert lifecycle.claim(session, made[2], "big1")
    return made


def statuses(db, ids: list[str]) -> list[tuple[str, str]]:
    with db.session() as session:
        return [(session.get(Job, i).queue, session.get(Job, i).status) for i in ids]


def test_an_admin_lists_moves_and_cancels_a_removed_queues_jobs(labtrain, jobs, db):
    listed = labtrain("admin", "queue", "list").output.splitlines()
    assert listed[0] == "queue\tconfigured\tqueued\trunning"
    assert listed[1:] == ["cpu\tyes\t0\t0", "gpu\tyes\t0\t0", "short\tyes\t0\t0", "t4\tyes\t0\t0", "bigmem\tNO\t2\t1"]

    refused = labtrain("admin", "queue", "move", "bigmem", "nope", ok=False)
    assert "there is no queue 'nope'; the queues here are cpu, gpu, short, t4" in refused.output
    wrong = labtrain("admin", "queue", "move", "bigmem", "t4")  # CPU jobs: none fits a GPU queue
    assert f"stayed in bigmem: {jobs[0]}: it runs on the CPU and queue t4's jobs run on the GPU" in wrong.output
    assert "0 job(s) moved from queue bigmem to queue t4, 2 stayed" in wrong.output
    moved = labtrain("admin", "queue", "move", "bigmem", "short", "--by", "root")
    assert f"moved {jobs[0]}" in moved.output
    assert "1 running job(s) of queue bigmem finish where they run" in moved.output
    assert statuses(db, jobs) == [("short", "queued"), ("short", "queued"), ("bigmem", "running")]

    assert "queue short is configured" in labtrain("admin", "queue", "cancel", "short", ok=False).output
    with db.session() as session:  # the running one went back to the queue (its worker was lost)
        lifecycle.requeue(session, session.get(Job, jobs[2]), "worker big1 lost")
    cancelled = labtrain("admin", "queue", "cancel", "bigmem", "--by", "root")
    assert f"cancelled {jobs[2]}" in cancelled.output
    assert statuses(db, jobs)[2] == ("bigmem", "cancelled")
    with db.session() as session:
        audit = [(a.actor, a.action, a.target) for a in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert audit == [
        ("admin", "move_queue", "bigmem"),
        ("root", "move_queue", "bigmem"),
        ("root", "cancel_queue", "bigmem"),
    ]


def test_a_named_queues_running_limit_is_overridden_shown_and_reset_per_user(labtrain, jobs, db):
    shown = labtrain("users", "limits", "dora").output.splitlines()
    assert "max_running_queue.short\t2\tqueue" in shown and "max_running_queue.t4\t1\tdefault" in shown

    changed = labtrain("users", "limits", "dora", "--max-running-queue", "short=5", "--by", "prof").output
    assert "max_running_queue.short\t5\toverride" in changed.splitlines()
    for value, message in [
        ("nope=1", "there is no named queue 'nope'; the named queues here are short, t4"),
        ("cpu=1", "--max-running-cpu"),
        ("short", "is not QUEUE=N"),
        ("short=-1", "is not QUEUE=N"),
    ]:
        assert message in labtrain("users", "limits", "dora", "--max-running-queue", value, ok=False).output

    with db.session() as session:  # an override of a queue since removed stays shown until dropped
        dora = session.scalar(select(User).where(User.name == "dora"))
        dora.limits = {**dora.limits, "max_running_queue.bigmem": 1}
    assert "max_running_queue.bigmem\t1\toverride (queue not configured)" in labtrain("users", "limits", "dora").output
    dropped = labtrain("users", "limits", "dora", "--max-running-queue", "bigmem=default").output
    assert "bigmem" not in dropped and "max_running_queue.short\t5\toverride" in dropped
    reset = labtrain("users", "limits", "dora", "--reset").output.splitlines()
    assert "max_running_queue.short\t2\tqueue" in reset
    with db.session() as session:
        assert session.scalar(select(User.limits).where(User.name == "dora")) is None
        audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "set_limits").order_by(AuditEntry.id))
        first = next(iter(audit))
        assert (first.actor, first.target, first.details) == ("prof", "dora", {"max_running_queue.short": 5})
