"""`labtrain admin usage | prune | workers` against the test PostgreSQL database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from service.cli import main
from service.cli.admin import parse_when
from service.core import storage
from service.core.orm import AuditEntry, Job, JobEvent, Model, User, Worker, utcnow
from service.lab.users import create_user

pytestmark = pytest.mark.fast  # the fast tier: no servers needed (tests/conftest.py)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def admin_cli(settings, db):
    """Runs `labtrain admin ARGS` in this process with the test's settings in the environment."""
    runner = CliRunner()
    env = {
        "LABTRAIN_HOME": str(settings.home),
        "LABTRAIN_DATABASE_URL": settings.database_url,
        "LABTRAIN_ARTIFACT_DIR": str(settings.artifact_dir),
        "LABTRAIN_RETENTION_DAYS": "",
    }

    def run(*args: str, **extra_env: str):
        result = runner.invoke(main, ["admin", *args], env={**env, **extra_env}, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result

    return run


def add_job(
    db,
    owner: str,
    *,
    queue: str = "cpu",
    family: str = "classic",
    status: str = "succeeded",
    started: timedelta | None = None,
    finished: timedelta | None = None,
    **fields,
) -> str:
    """A job row; `started`/`finished` are how long ago (from the real now)."""
    now = utcnow()
    with db.session() as session:
        user = session.scalar(select(User).where(User.name == owner)) or create_user(session, owner)[0]
        job = Job(
            owner_id=user.id,
            family=family,
            spec={},
            queue=queue,
            status=status,
            started_at=None if started is None else now - started,
            finished_at=None if finished is None else now - finished,
            **fields,
        )
        session.add(job)
        session.flush()
        return job.id


def test_parse_when():
    assert parse_when("7d", NOW) == NOW - timedelta(days=7)
    assert parse_when("12h", NOW) == NOW - timedelta(hours=12)
    assert parse_when("2w", NOW) == NOW - timedelta(weeks=2)
    assert parse_when("2026-11-01", NOW) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_when("2026-11-01T08:00+01:00", NOW) == datetime(2026, 11, 1, 7, tzinfo=UTC)
    with pytest.raises(click.BadParameter, match="7d"):
        parse_when("last week", NOW)


def test_usage_counts_device_hours_per_user_and_queue(db, admin_cli):
    day, hour = timedelta(days=1), timedelta(hours=1)
    add_job(db, "alice", started=3 * day + 2 * hour, finished=3 * day)  # 2 h
    add_job(db, "alice", started=day + hour, finished=day, status="failed")  # 1 h: failed jobs used it too
    add_job(db, "alice", queue="gpu", family="network", status="running", started=hour / 2)  # 0.5 h so far
    add_job(db, "alice", family="search", status="running", started=2 * day)  # holds no device
    add_job(db, "alice", status="cancelled", finished=hour)  # never started
    add_job(db, "alice", status="queued", started=2 * day)  # re-queued after its worker was lost: not running now
    add_job(db, "bob", started=8 * day, finished=6 * day)  # 1 day inside 7d
    add_job(db, "bob", started=20 * day, finished=19 * day)  # before the window

    rows = json.loads(admin_cli("usage", "--since", "7d", "--json").stdout)["usage"]
    got = {(r["user"], r["queue"]): (r["jobs"], r["device_hours"]) for r in rows}
    assert set(got) == {("alice", "cpu"), ("alice", "gpu"), ("bob", "cpu")}
    assert got[("alice", "cpu")][0] == 2 and got[("alice", "cpu")][1] == pytest.approx(3, abs=0.01)
    assert got[("alice", "gpu")][0] == 1 and got[("alice", "gpu")][1] == pytest.approx(0.5, abs=0.01)
    assert got[("bob", "cpu")][0] == 1 and got[("bob", "cpu")][1] == pytest.approx(24, abs=0.01)

    everything = json.loads(admin_cli("usage", "--since", "2000-01-01", "--json").stdout)["usage"]
    assert {(r["user"], r["queue"]): r["device_hours"] for r in everything}[("bob", "cpu")] == pytest.approx(
        72, abs=0.01
    )

    table = admin_cli("usage", "--since", "7d").stdout.splitlines()
    assert table[1].split() == ["user", "queue", "jobs", "device_hours"]
    assert table[2].split() == ["alice", "cpu", "2", "3.00"] and table[4].split() == ["bob", "cpu", "1", "24.00"]


def _files(settings, job_id: str, model_id: str | None = None, size: int = 1000):
    """A job directory (log and a checkpoint) and, with `model_id`, a model file."""
    folder = storage.job_dir(settings, job_id)
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "job.log").write_bytes(b"x" * size)
    (folder / "checkpoints" / "epoch-1.pt").write_bytes(b"c" * size)
    paths = [folder]
    if model_id:
        path = storage.model_path(settings, model_id, ".skops")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"m" * size)
        paths.append(path)
    return paths


def _model(db, job_id: str, settings) -> str:
    with db.session() as session:
        job = session.get(Job, job_id)
        model = Model(
            job_id=job_id, owner_id=job.owner_id, framework="sklearn", task="classification", input={}, artifact_path=""
        )
        session.add(model)
        session.flush()
        model.artifact_path = str(storage.model_path(settings, model.id, ".skops"))
        job.result = {"model_id": model.id}
        return model.id


def test_prune_removes_old_finished_jobs_files_and_unreferenced_models(settings, db, admin_cli):
    day = timedelta(days=1)
    old = add_job(db, "alice", started=41 * day, finished=40 * day)
    old_failed = add_job(db, "alice", status="failed", started=41 * day, finished=40 * day)
    recent = add_job(db, "alice", started=2 * day, finished=day)
    running = add_job(db, "alice", status="running", started=60 * day)  # never touched, however old
    queued = add_job(db, "bob", status="queued")
    # A search that finished recently: its trials' models stay, the best one above all.
    search = add_job(db, "bob", family="search", started=50 * day, finished=day)
    best = add_job(db, "bob", started=50 * day, finished=45 * day, parent_id=search, trial_number=0)
    other = add_job(db, "bob", started=50 * day, finished=45 * day, parent_id=search, trial_number=1)
    # An old search with an old trial: both go.
    old_search = add_job(db, "bob", family="search", started=50 * day, finished=44 * day)
    old_trial = add_job(db, "bob", started=50 * day, finished=45 * day, parent_id=old_search, trial_number=0)

    models = {job_id: _model(db, job_id, settings) for job_id in (old, recent, best, other, old_trial)}
    with db.session() as session:
        session.get(Job, search).result = {"model_id": models[best]}
        session.get(Job, old_search).result = {"model_id": models[old_trial]}
    files = {
        job_id: _files(settings, job_id, models.get(job_id))
        for job_id in (old, old_failed, recent, running, queued, search, best, other, old_search, old_trial)
    }
    gone = [old, old_failed, old_search, old_trial]
    expected_bytes = sum(2000 + (1000 if j in models else 0) for j in gone) + 2000 * 2  # + best's, other's dirs

    dry = admin_cli("prune", "--older-than", "30d", "--dry-run").stdout
    assert "would remove" in dry and f"{expected_bytes} bytes" in dry
    assert all(path.exists() for paths in files.values() for path in paths)
    with db.session() as session:
        assert session.scalar(select(AuditEntry)) is None and len(session.scalars(select(Model)).all()) == 5

    out = admin_cli("prune", "--older-than", "30d", "--by", "prof").stdout
    assert f"{expected_bytes} bytes" in out and "removed 6 job directories and 2 models" in out
    for job_id, paths in files.items():
        for path in paths:
            should_exist = job_id not in gone and not (path.parent.name == "jobs" and job_id in (best, other))
            assert path.exists() == should_exist, (job_id, path)
    with db.session() as session:
        assert set(session.scalars(select(Model.job_id))) == {recent, best, other}
        audit = session.scalars(select(AuditEntry)).one()
        assert (audit.actor, audit.action) == ("prof", "prune")
        assert audit.details["bytes_freed"] == expected_bytes
        assert sorted(audit.details["models"]) == sorted([models[old], models[old_trial]])
        noted = {e.job_id for e in session.scalars(select(JobEvent).where(JobEvent.type == "log"))}
        assert noted == set(gone) | {best, other}
        assert session.get(Job, old).status == "succeeded"  # the job's row and metrics stay

    again = admin_cli("prune", "--older-than", "30d").stdout
    assert "removed 0 job directories and 0 models" in again


def test_prune_uses_the_retention_setting_and_can_keep_models(settings, db, admin_cli):
    day = timedelta(days=1)
    job = add_job(db, "alice", started=7 * day, finished=6 * day)
    model_id = _model(db, job, settings)
    job_dir, model_file = _files(settings, job, model_id)

    assert "removed 0 job directories" in admin_cli("prune").stdout  # default: 30 days
    out = admin_cli("prune", "--keep-models", LABTRAIN_RETENTION_DAYS="5").stdout
    assert "removed 1 job directories and 0 models" in out
    assert not job_dir.exists() and model_file.exists()
    out = admin_cli("prune", "--older-than", "2000-01-01T00:00:00+00:00").stdout
    assert "0 models" in out  # it finished after that date
    out = admin_cli("prune", LABTRAIN_RETENTION_DAYS="5").stdout
    assert "removed 0 job directories and 1 models" in out and not model_file.exists()


def test_prune_keeps_models_outside_the_artifact_directory(settings, db, admin_cli, tmp_path_factory):
    job = add_job(db, "alice", started=41 * timedelta(days=1), finished=40 * timedelta(days=1))
    model_id = _model(db, job, settings)
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "model.skops"
    elsewhere.write_bytes(b"m")
    with db.session() as session:
        session.get(Model, model_id).artifact_path = str(elsewhere)
    result = admin_cli("prune")
    assert "outside" in result.output and "0 models" in result.stdout and elsewhere.exists()


def test_workers_table_and_json(db, admin_cli):
    now = utcnow()
    with db.session() as session:
        session.add(
            Worker(
                name="gpu0@lab",
                queues="gpu",
                host="lab",
                pid=10,
                concurrency=1,
                gpu_name="NVIDIA H100",
                gpu_memory_mb=81559,
                heartbeat_at=now,
            )
        )
        session.add(
            Worker(
                name="cpu@old", queues="cpu", host="old", pid=11, concurrency=4, heartbeat_at=now - timedelta(minutes=5)
            )
        )
    rows = json.loads(admin_cli("workers", "--json").stdout)
    assert [(r["name"], r["online"], r["queues"]) for r in rows] == [
        ("cpu@old", False, ["cpu"]),
        ("gpu0@lab", True, ["gpu"]),
    ]
    assert rows[0]["heartbeat_age_s"] >= 300 and rows[1]["gpu_memory_mb"] == 81559
    table = admin_cli("workers").stdout.splitlines()
    assert table[0].split() == ["name", "queues", "host", "concurrency", "gpu", "heartbeat", "state"]
    assert table[1].split()[0] == "cpu@old" and table[1].split()[-1] == "offline"
    assert "NVIDIA H100 (81559 MiB)" in table[2] and table[2].split()[-1] == "online"
