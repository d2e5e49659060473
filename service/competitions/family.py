"""The scoring family's record in the job-family registry: the service's own jobs, made by
competitions (service/competitions/scoring.py), never submitted through POST /api/v1/jobs."""

from __future__ import annotations

from typing import Any

from service.competitions.scoring import FAMILY as NAME
from service.competitions.spec import METRICS, ScoreRun
from service.core.errors import SpecError
from service.jobs.context import SubmitContext
from service.jobs.families import Family, register
from service.jobs.spec import ValidatedJob


def refuse(payload: dict[str, Any], ctx: SubmitContext) -> ValidatedJob:
    raise SpecError("scoring jobs are made by competitions: submit to the competition instead", field="score")


FAMILY = register(
    Family(
        name=NAME,
        key="score",
        summary="score (made by competitions)",
        request_model=ScoreRun,
        run_model=ScoreRun,
        validate=refuse,
        catalog_key="score",
        catalog=lambda: {"metrics": list(METRICS)},
        kind=lambda spec: spec.get("metric", "unknown"),
        trainer="workers.trainers.score",
        makes_model=False,
        no_model="a competition's scoring: its result holds the scores, and it makes no model",
        budgeted=False,
        internal=True,
    )
)
