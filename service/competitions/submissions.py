"""Students' submissions: a model of theirs or a predictions file, checked, then scored by a job;
the daily limit (per UTC day, over the submissions that count); selections for the final
ranking; and `refresh`, which copies finished scoring jobs' outcomes into their submissions
whenever submissions, the leaderboard or grades are read."""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.competitions import scoring
from service.competitions.competitions import id_column, is_closed, iso
from service.competitions.spec import task_of
from service.competitions.testset import feature_columns, read_test_set
from service.core import storage
from service.core.config import Settings
from service.core.errors import Conflict, NotFound, ServiceError, SpecError
from service.core.orm import Competition, CompetitionSubmission, Dataset, Job, Model, User, could_be_id, utcnow
from service.jobs import families, lifecycle

SCORING, SCORED, FAILED = "scoring", "scored", "failed"


def refresh(session: Session, competition: Competition) -> None:
    """Pending submissions whose scoring job finished take its outcome (one query for them all)."""
    rows = session.execute(
        select(CompetitionSubmission, Job)
        .join(Job, Job.id == CompetitionSubmission.job_id)
        .where(
            CompetitionSubmission.competition_id == competition.id,
            CompetitionSubmission.status == SCORING,
            Job.status.in_(lifecycle.FINISHED),
        )
    ).all()
    for submission, job in rows:
        for name, value in scoring.outcome(job).items():
            setattr(submission, name, value)
    if rows:
        session.commit()


def day_window(now: datetime) -> tuple[datetime, datetime]:
    start = datetime.combine(now.astimezone(UTC).date(), time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


def used_today(session: Session, competition: Competition, user: User, now: datetime) -> int:
    start, _ = day_window(now)
    return session.scalar(
        select(func.count()).where(
            CompetitionSubmission.competition_id == competition.id,
            CompetitionSubmission.user_id == user.id,
            CompetitionSubmission.counts.is_(True),
            CompetitionSubmission.created_at >= start,
        )
    )


def allowance(session: Session, competition: Competition, user: User) -> dict[str, Any]:
    """How many submissions the user has left today, and when the day resets (UTC midnight)."""
    now = utcnow()
    left = max(0, competition.daily_limit - used_today(session, competition, user, now))
    return {"left_today": left, "daily_limit": competition.daily_limit, "resets_at": iso(day_window(now)[1])}


def _may_submit(session: Session, competition: Competition, user: User) -> None:
    if is_closed(competition):
        raise Conflict(
            f"the competition closed at {iso(competition.closes_at)}; no new submissions",
            field="id",
            code="competition_closed",
        )
    refresh(session, competition)  # a scoring the service failed no longer counts
    today = allowance(session, competition, user)
    if today["left_today"] == 0:
        resets = day_window(utcnow())[1]
        raise ServiceError(
            f"you have used today's {competition.daily_limit} submissions; the limit resets at {today['resets_at']}",
            code="daily_limit_reached",
            status=429,
            details={
                "limit": competition.daily_limit,
                "resets_at": today["resets_at"],
                "retry_after": max(1, math.ceil((resets - utcnow()).total_seconds())),
            },
        )


def submit_model(
    session: Session, settings: Settings, competition: Competition, user: User, model_id: str
) -> CompetitionSubmission:
    """The caller's own model, of the competition's task, taking the test set's columns."""
    _may_submit(session, competition, user)
    model = session.get(Model, model_id) if could_be_id(model_id) else None
    if model is None or model.owner_id != user.id:
        raise NotFound(f"no model with id {model_id!r}", field="model")
    columns = _model_columns(session, competition, model)
    submission = CompetitionSubmission(competition_id=competition.id, user_id=user.id, model_id=model.id)
    session.add(submission)
    session.flush()
    scoring.start_scoring(session, settings, competition, submission, model, columns)
    return submission


def _model_columns(session: Session, competition: Competition, model: Model) -> list[str]:
    """The test set's columns the model takes, in its order; a 422 naming `model` when it cannot
    take them, so a mismatch costs no submission."""
    task = task_of(competition.metric)
    if model.task != task:
        raise SpecError(f"this competition scores {task}; the model does {model.task}", field="model")
    if families.predictor(model.framework) is None:
        raise SpecError(f"{model.framework} models cannot answer predict here", field="model")
    test = session.get(Dataset, competition.test_dataset_id)
    kinds = {c["name"]: c["kind"] for c in test.info["columns"] if c["name"] != competition.target}
    features = (model.input or {}).get("features")
    if features:
        missing = [f for f in features if f not in kinds]
        if missing:
            raise SpecError(
                f"the model takes columns the test set does not have: {', '.join(map(str, missing[:5]))}",
                field="model",
            )
        return [str(f) for f in features]
    shape = (model.input or {}).get("shape")
    columns = feature_columns(list(kinds), id_column(test))
    if shape != [len(columns)]:
        raise SpecError(
            f"the model takes inputs of shape {shape}; this competition's inputs are {len(columns)} table "
            f"columns ({', '.join(columns[:5])}{', ...' if len(columns) > 5 else ''})",
            field="model",
        )
    text = [c for c in columns if kinds[c] != "numeric"]
    if text:
        raise SpecError(f"the model takes numbers; columns {', '.join(text[:5])} hold text", field="model")
    return columns


def submit_file(
    session: Session, settings: Settings, competition: Competition, user: User, data: bytes
) -> CompetitionSubmission:
    """A predictions CSV (`id,prediction`, one row per test id), checked now and stored in the
    competition's folder; a bad file is a 422 naming `file` and costs no submission."""
    _may_submit(session, competition, user)
    test = session.get(Dataset, competition.test_dataset_id)
    ids = read_test_set(test.path, competition.target, id_column(test)).ids
    cleaned = _predictions(data, ids, task_of(competition.metric))
    submission = CompetitionSubmission(competition_id=competition.id, user_id=user.id)
    session.add(submission)
    session.flush()
    path = scoring.submission_file(settings, competition.id, submission.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    storage.write_atomically(path, cleaned)
    submission.predictions_path = str(path)
    scoring.start_scoring(session, settings, competition, submission)
    return submission


def _predictions(data: bytes, ids: list[str], task: str) -> bytes:
    """The file as a clean `id,prediction` CSV in the test set's order, or a 422 naming `file`."""
    try:
        frame = pd.read_csv(io.BytesIO(data), dtype={"id": str}, keep_default_na=task == "regression")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError):
        raise SpecError(
            "the predictions file is not a readable CSV with the header id,prediction", field="file"
        ) from None
    if list(frame.columns) != ["id", "prediction"]:
        raise SpecError(
            f"the predictions file's header must be id,prediction (it is {','.join(map(str, frame.columns))})",
            field="file",
        )
    given = frame["id"].astype(str).str.strip()
    twice = given[given.duplicated()]
    if len(twice):
        raise SpecError(f"id {twice.iloc[0]} appears more than once", field="file")
    missing, unknown = sorted(set(ids) - set(given)), sorted(set(given) - set(ids))
    if missing or unknown:
        raise SpecError(
            f"the file must hold exactly the {len(ids)} test ids (GET .../test-inputs): "
            + "; ".join(
                filter(
                    None,
                    [
                        f"{len(missing)} missing, e.g. {missing[0]}" if missing else "",
                        f"{len(unknown)} unknown, e.g. {unknown[0]}" if unknown else "",
                    ],
                )
            ),
            field="file",
        )
    predictions = frame["prediction"]
    if task == "regression":
        numbers = pd.to_numeric(predictions, errors="coerce")
        if numbers.isna().any() or not numbers.map(math.isfinite).all():
            raise SpecError("every prediction must be a finite number", field="file")
        predictions = numbers
    elif predictions.isna().any() or (predictions.astype(str).str.strip() == "").any():
        raise SpecError("every row needs a prediction", field="file")
    ordered = pd.DataFrame({"id": given, "prediction": predictions}).set_index("id").loc[ids].reset_index()
    return ordered.to_csv(index=False).encode()


def select_submission(
    session: Session, competition: Competition, user: User, submission_id: str, selected: bool
) -> CompetitionSubmission:
    """Marks one of the caller's scored submissions for the final ranking (until closing)."""
    submission = session.get(CompetitionSubmission, submission_id) if could_be_id(submission_id) else None
    if submission is None or submission.competition_id != competition.id or submission.user_id != user.id:
        raise NotFound(f"no submission with id {submission_id!r}", field="id")
    if is_closed(competition):
        raise Conflict("the competition is closed; selections are final", field="id", code="competition_closed")
    refresh(session, competition)
    if submission.status != SCORED:
        raise Conflict(f"only scored submissions can be selected; this one is {submission.status}", field="id")
    if selected and not submission.selected:
        chosen = session.scalar(
            select(func.count()).where(
                CompetitionSubmission.competition_id == competition.id,
                CompetitionSubmission.user_id == user.id,
                CompetitionSubmission.selected.is_(True),
            )
        )
        if chosen >= competition.final_selections:
            raise Conflict(
                f"you may select at most {competition.final_selections} submissions; unselect one first "
                '({"selected": false})',
                field="selected",
                code="too_many_selections",
                details={"final_selections": competition.final_selections},
            )
    submission.selected = selected
    session.flush()
    return submission


def listed(session: Session, competition: Competition, user: User, staff: bool) -> list[CompetitionSubmission]:
    query = select(CompetitionSubmission).where(CompetitionSubmission.competition_id == competition.id)
    if not staff:
        query = query.where(CompetitionSubmission.user_id == user.id)
    return list(session.scalars(query.order_by(CompetitionSubmission.created_at.desc(), CompetitionSubmission.id)))


def submission_view(
    submission: CompetitionSubmission, user_name: str, competition: Competition, staff: bool
) -> dict[str, Any]:
    """A submission; its private score only for staff, or once the competition closed."""
    return {
        "id": submission.id,
        "competition": competition.id,
        "user": user_name,
        "kind": "model" if submission.model_id else "file",
        "model": submission.model_id,
        "status": submission.status,
        "public_score": submission.public_score,
        "private_score": submission.private_score if staff or is_closed(competition) else None,
        "error": submission.error,
        "counts": submission.counts,
        "selected": submission.selected,
        "created_at": iso(submission.created_at),
        "scored_at": iso(submission.scored_at) if submission.scored_at else None,
    }
