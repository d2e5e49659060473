"""The leaderboard and the grades. While open, each student's best public score among their
scored submissions; once closed, the best private score among the submissions they selected
(with none selected, their `final_selections` best by public score, as Kaggle does). Ties go
to the earlier submission."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.competitions.competitions import PRIVATE, is_closed, iso, phase
from service.competitions.spec import higher_is_better
from service.competitions.submissions import SCORED
from service.core.orm import Competition, CompetitionSubmission, CourseMember, User
from service.courses.roles import STUDENT


@dataclass
class Standing:
    user: User
    public: CompetitionSubmission | None  # the best public submission
    final: CompetitionSubmission | None  # the best private one among the final choices
    submissions: int  # those that count


def standings(session: Session, competition: Competition) -> list[Standing]:
    """Each submitter's standing (refresh the submissions first)."""
    higher = higher_is_better(competition.metric)
    rows = session.execute(
        select(CompetitionSubmission, User)
        .join(User, User.id == CompetitionSubmission.user_id)
        .where(CompetitionSubmission.competition_id == competition.id)
        .order_by(CompetitionSubmission.created_at, CompetitionSubmission.id)
    ).all()
    by_user: dict[str, tuple[User, list[CompetitionSubmission]]] = {}
    for submission, user in rows:
        by_user.setdefault(user.id, (user, []))[1].append(submission)
    found = []
    for user, mine in by_user.values():
        scored = [s for s in mine if s.status == SCORED and s.public_score is not None]
        public = _best(scored, "public_score", higher)
        chosen = [s for s in scored if s.selected] or _top(scored, competition.final_selections, higher)
        final = _best([s for s in chosen if s.private_score is not None], "private_score", higher)
        found.append(Standing(user, public, final, sum(1 for s in mine if s.counts)))
    return found


def _key(score: float, higher: bool) -> float:
    return -score if higher else score


def _best(items: list[CompetitionSubmission], field: str, higher: bool) -> CompetitionSubmission | None:
    # min() keeps the first of equals: submissions come in the order they were made.
    return min(items, key=lambda s: _key(getattr(s, field), higher), default=None)


def _top(items: list[CompetitionSubmission], count: int, higher: bool) -> list[CompetitionSubmission]:
    return sorted(items, key=lambda s: _key(s.public_score, higher))[:count]


def ranked(competition: Competition, found: list[Standing], private: bool) -> list[tuple[int, Standing, float]]:
    """(rank, standing, score) for the standings with a score in the phase asked for."""
    higher = higher_is_better(competition.metric)
    field = "private_score" if private else "public_score"
    pick = (lambda s: s.final) if private else (lambda s: s.public)
    scored = [(s, pick(s)) for s in found if pick(s) is not None]
    scored.sort(key=lambda pair: (_key(getattr(pair[1], field), higher), pair[1].created_at, pair[1].id))
    return [(rank, standing, getattr(best, field)) for rank, (standing, best) in enumerate(scored, start=1)]


def leaderboard(session: Session, competition: Competition) -> dict[str, Any]:
    current = phase(competition)
    private = current == PRIVATE
    rows = [
        {
            "rank": rank,
            "user": standing.user.name,
            "score": score,
            "submissions": standing.submissions,
            "submitted_at": iso((standing.final if private else standing.public).created_at),
        }
        for rank, standing, score in ranked(competition, standings(session, competition), private)
    ]
    return {"phase": current, "closed": is_closed(competition), "rows": rows}


GRADE_COLUMNS = ("user", "name", "email", "rank", "public", "private", "submissions")


def grades_csv(session: Session, competition: Competition) -> bytes:
    """One row per student of the course (and any other submitter), ranked by the final
    (private) score; those without one come last with empty cells."""
    found = {s.user.id: s for s in standings(session, competition)}
    students = session.scalars(
        select(User)
        .join(CourseMember, CourseMember.user_id == User.id)
        .where(CourseMember.course_id == competition.course_id, CourseMember.role == STUDENT)
        .order_by(User.name)
    )
    for user in students:
        found.setdefault(user.id, Standing(user, None, None, 0))
    ranks = {standing.user.id: rank for rank, standing, _ in ranked(competition, list(found.values()), private=True)}
    ordered = sorted(found.values(), key=lambda s: (ranks.get(s.user.id, len(found) + 1), s.user.name))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(GRADE_COLUMNS)
    for standing in ordered:
        writer.writerow(
            [
                standing.user.name,
                standing.user.full_name or "",
                standing.user.email or "",
                ranks.get(standing.user.id, ""),
                "" if standing.public is None else standing.public.public_score,
                "" if standing.final is None else standing.final.private_score,
                standing.submissions,
            ]
        )
    return out.getvalue().encode()
