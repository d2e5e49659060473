"""A closed course's files after its retention (`labtrain admin prune`): a course whose term
ended more than LABTRAIN_COURSE_RETENTION_DAYS ago loses its jobs' files, its models and its
data sets, and is marked pruned; one within the retention keeps everything; --dry-run changes
nothing; a course with a job still queued keeps its data sets until that job ends."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from service.core import storage
from service.core.orm import (
    AuditEntry,
    Competition,
    CompetitionSubmission,
    Course,
    Dataset,
    Job,
    JobEvent,
    Model,
    utcnow,
)
from tests.service.cli import test_admin
from tests.service.cli.test_admin import _files, _model, add_job

pytestmark = pytest.mark.fast
admin_cli = test_admin.admin_cli  # `labtrain admin ...` in this process, with the test's settings

CSV = b"a,b,label\n" + b"".join(b"%d,%d,%d\n" % (i, i % 3, i % 2) for i in range(20))
DAY = timedelta(days=1)


def course_with_data(client, root, name: str, ended_days_ago: int) -> str:
    """A course, a data set it published while open, then its term_end moved back; its id."""
    assert (
        client.post("/api/v1/courses", headers=root, json={"name": name, "term_end": "2099-01-31"}).status_code == 201
    )
    published = client.post(
        f"/api/v1/courses/{name}/datasets",
        headers=root,
        data={"file": (io.BytesIO(CSV), "train.csv"), "name": "train"},
        content_type="multipart/form-data",
    )
    assert published.status_code == 201, published.get_json()
    term_end = (utcnow().date() - ended_days_ago * DAY).isoformat()
    assert client.patch(f"/api/v1/courses/{name}", headers=root, json={"term_end": term_end}).status_code == 200
    return published.get_json()["id"]


def course_state(db, name: str) -> tuple[list[str], object]:
    with db.session() as session:
        course = session.scalar(select(Course).where(Course.name == name))
        return list(session.scalars(select(Dataset.id).where(Dataset.course_id == course.id))), course.pruned_at


def course_id(db, name: str) -> str:
    with db.session() as session:
        return session.scalar(select(Course.id).where(Course.name == name))


def test_a_course_past_its_retention_loses_its_files_one_within_keeps_them(client, root, db, settings, admin_cli):
    old_data = course_with_data(client, root, "OLD-2025", ended_days_ago=200)
    recent_data = course_with_data(client, root, "NEW-2026", ended_days_ago=100)
    # Jobs that finished yesterday: no age-based retention would touch them.
    old_job = add_job(db, "alice", started=2 * DAY, finished=DAY, course_id=course_id(db, "OLD-2025"))
    recent_job = add_job(db, "alice", started=2 * DAY, finished=DAY, course_id=course_id(db, "NEW-2026"))
    lone_job = add_job(db, "alice", started=2 * DAY, finished=DAY)
    models = {job: _model(db, job, settings) for job in (old_job, recent_job, lone_job)}
    files = {job: _files(settings, job, models[job]) for job in models}
    data_files = {d: Path(settings.artifact_dir / "datasets" / f"{d}.csv") for d in (old_data, recent_data)}
    assert all(path.exists() for path in data_files.values())

    dry = admin_cli("prune", "--dry-run", LABTRAIN_COURSE_RETENTION_DAYS="180").stdout
    assert f"would remove data set {old_data} of course OLD-2025" in dry and recent_data not in dry
    assert f"would remove model {models[old_job]}" in dry and "1 would be marked pruned" in dry
    assert all(path.exists() for paths in files.values() for path in paths)
    assert all(path.exists() for path in data_files.values())
    assert course_state(db, "OLD-2025") == ([old_data], None)

    out = admin_cli("prune", "--by", "prof", LABTRAIN_COURSE_RETENTION_DAYS="180").stdout
    assert "removed 1 data sets of 1 courses" in out and "removed 1 job directories and 1 models" in out
    assert not any(path.exists() for path in files[old_job]) and not data_files[old_data].exists()
    assert all(path.exists() for job in (recent_job, lone_job) for path in files[job])
    assert data_files[recent_data].exists()
    rows, pruned_at = course_state(db, "OLD-2025")
    assert rows == [] and pruned_at is not None
    assert course_state(db, "NEW-2026") == ([recent_data], None)
    with db.session() as session:
        assert set(session.scalars(select(Model.job_id))) == {recent_job, lone_job}
        audit = session.scalar(select(AuditEntry).where(AuditEntry.action == "prune_course"))
        assert (audit.actor, audit.target, audit.details["datasets"]) == ("prof", "OLD-2025", [old_data])
        event = session.scalar(select(JobEvent).where(JobEvent.job_id == old_job, JobEvent.type == "log"))
        assert "its course OLD-2025 ended on" in event.data["message"]

    # Pruned once: a later prune passes it by; a shorter retention reaches the other course.
    again = admin_cli("prune", LABTRAIN_COURSE_RETENTION_DAYS="180").stdout
    assert "data sets of" not in again and "removed 0 job directories and 0 models" in again
    shorter = admin_cli("prune", LABTRAIN_COURSE_RETENTION_DAYS="90").stdout
    assert "removed 1 data sets of 1 courses" in shorter and not data_files[recent_data].exists()
    assert not any(path.exists() for path in files[recent_job]) and all(p.exists() for p in files[lone_job])


def test_a_course_waits_for_its_queued_jobs_and_keep_models_leaves_it_unmarked(client, root, db, settings, admin_cli):
    data = course_with_data(client, root, "OLD-2025", ended_days_ago=400)
    old = course_id(db, "OLD-2025")
    done = add_job(db, "alice", started=300 * DAY, finished=299 * DAY, course_id=old)
    queued = add_job(db, "alice", status="queued", course_id=old)
    model_id = _model(db, done, settings)
    job_dir, model_file = _files(settings, done, model_id)
    data_file = settings.artifact_dir / "datasets" / f"{data}.csv"

    out = admin_cli("prune", "--keep-models").stdout
    assert "kept course OLD-2025's data sets: 1 of its jobs are queued or running" in out
    assert not job_dir.exists() and model_file.exists() and data_file.exists()
    assert course_state(db, "OLD-2025") == ([data], None)

    with db.session() as session:  # the queued job ends
        session.get(Job, queued).status, session.get(Job, queued).finished_at = "cancelled", utcnow()
    out = admin_cli("prune", "--keep-models").stdout
    assert "removed 1 data sets of 1 courses" in out and "0 marked pruned" in out
    assert model_file.exists() and not data_file.exists() and course_state(db, "OLD-2025") == ([], None)
    out = admin_cli("prune").stdout
    assert "removed 0 job directories and 1 models" in out and "1 marked pruned" in out
    assert not model_file.exists() and course_state(db, "OLD-2025")[1] is not None


def test_a_pruned_courses_competitions_keep_their_scores_not_their_predictions_files(
    client, root, db, settings, admin_cli
):
    test_set = course_with_data(client, root, "OLD-2025", ended_days_ago=200)
    with db.session() as session:
        competition = Competition(
            course_id=course_id(db, "OLD-2025"),
            name="cup",
            metric="accuracy",
            test_dataset_id=test_set,
            target="label",
            closes_at=utcnow() - 250 * DAY,
        )
        session.add(competition)
        session.flush()
        folder = storage.competition_dir(settings, competition.id)
        folder.mkdir(parents=True)
        predictions = folder / "s1.csv"
        predictions.write_text("id,prediction\n1,0\n")
        user_id = session.scalar(select(Dataset.owner_id).where(Dataset.id == test_set))
        session.add(
            CompetitionSubmission(
                id="s1",
                competition_id=competition.id,
                user_id=user_id,
                predictions_path=str(predictions),
                status="scored",
                public_score=0.75,
                private_score=0.5,
            )
        )

    dry = admin_cli("prune", "--dry-run", LABTRAIN_COURSE_RETENTION_DAYS="180").stdout
    assert f"would remove competition {competition.id}'s predictions files of course OLD-2025" in dry
    assert predictions.exists()

    admin_cli("prune", LABTRAIN_COURSE_RETENTION_DAYS="180")
    assert not folder.exists()
    with db.session() as session:
        kept = session.get(CompetitionSubmission, "s1")
        assert (kept.predictions_path, kept.public_score, kept.private_score) == (None, 0.75, 0.5)
        # the data set a competition tests on stays, even a course's
        assert session.get(Dataset, test_set) is not None
