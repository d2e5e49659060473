"""A submission's scoring job: created here (owned by the competition's creator, so a student
reads neither its spec nor its result, and in the competition's course), run on the CPU queue by
workers/trainers/score, and read back into the submission once it finished."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from service.competitions.competitions import id_column
from service.competitions.spec import MODEL_FAULTS, ModelToScore, ScoreRun
from service.core import storage
from service.core.config import Settings
from service.core.orm import Competition, CompetitionSubmission, Dataset, Job, Model, User
from service.jobs import families, lifecycle
from service.serving.pool import model_fields, predictor_reference

FAMILY = "score"
TIME_LIMIT_S = 3600  # a model's every batch is held to predict's own limits; this bounds the whole


def start_scoring(
    session: Session,
    settings: Settings,
    competition: Competition,
    submission: CompetitionSubmission,
    model: Model | None = None,
    columns: list[str] | None = None,
) -> Job:
    test = session.get(Dataset, competition.test_dataset_id)
    to_score = None
    if model is not None:
        to_score = ModelToScore(
            predictor=predictor_reference(families.predictor(model.framework)),
            fields=model_fields(model),
            path=model.artifact_path,
            columns=columns or [],
        )
    run = ScoreRun(
        name=f"score {competition.name} {submission.id}",
        competition=competition.id,
        submission=submission.id,
        metric=competition.metric,
        test_path=test.path,
        target=competition.target,
        id_column=id_column(test),
        public_fraction=competition.public_fraction,
        model=to_score,
        predictions_path=submission.predictions_path,
    )
    owner = session.get(User, competition.created_by) if competition.created_by else None
    job = lifecycle.create_job(
        session,
        owner or session.get(User, submission.user_id),
        family=FAMILY,
        spec=run.stored(),
        queue="cpu",
        name=run.name,
        time_limit_s=TIME_LIMIT_S,
        max_attempts=settings.max_attempts,
    )
    job.course_id = competition.course_id
    submission.job_id = job.id
    session.flush()
    return job


def outcome(job: Job) -> dict[str, Any]:
    """The submission's fields once its job finished: its scores, or why it failed and whether
    that counts against the daily limit (not when the service failed it)."""
    if job.status == lifecycle.SUCCEEDED:
        result = job.result or {}
        return {
            "status": "scored",
            "public_score": result.get("public_score"),
            "private_score": result.get("private_score"),
            "counts": True,
            "scored_at": job.finished_at,
        }
    ours = job.status == lifecycle.FAILED and job.error_code in MODEL_FAULTS
    error = (
        job.error if ours else "the scoring failed on the service's side; it does not count against your daily limit"
    )
    return {"status": "failed", "error": error, "counts": ours, "scored_at": job.finished_at}


def submission_file(settings: Settings, competition_id: str, submission_id: str) -> Path:
    """Where an uploaded predictions file lives: the competition's own folder."""
    return storage.competition_dir(settings, competition_id) / f"{submission_id}.csv"
