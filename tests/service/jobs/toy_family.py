"""A job family that lives in the test suite alone: it counts up to a number, saying a word
each time. It shows that a family is one record and one trainer, and nothing else.

This module only describes the family; `toy_plugin` registers it (the module a process names
in LABTRAIN_FAMILIES), and in-process tests register it for their duration.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from service.core.errors import SpecError
from service.core.schema import Strict, describe_params
from service.jobs.context import SubmitContext
from service.jobs.families import Family
from service.jobs.spec import Run, ValidatedJob, parse_spec


class Counting(Strict):
    count: int = Field(3, ge=1, le=100, description="How far to count")
    word: str = Field("tick", min_length=1, max_length=20, description="What to say at each step")


class ToySpec(Strict):
    name: str | None = Field(None, min_length=1, max_length=255)
    toy: Counting
    device: Literal["auto", "cpu"] = "auto"


class ToyRun(Run):
    toy: Counting
    device: Literal["cpu"] = "cpu"


def validate(payload: dict[str, Any], ctx: SubmitContext) -> ValidatedJob:
    spec = parse_spec(ToySpec, payload)
    if spec.toy.word == "boom":
        raise SpecError("a toy never says boom; choose another word", field="toy.word")
    return ValidatedJob(family="toy", run=ToyRun(name=spec.name, toy=spec.toy), queue="cpu", name=spec.name)


FAMILY = Family(
    name="toy",
    key="toy",
    summary="toy (a test's own family)",
    request_model=ToySpec,
    run_model=ToyRun,
    validate=validate,
    catalog_key="toys",
    catalog=lambda: [{"name": "toy", "title": "Counts and says a word", "parameters": describe_params(Counting)}],
    kind=lambda spec: "toy",
    trainer="tests.service.jobs.toy_trainer",
    makes_model=False,
    no_model="a toy job: it counts, and makes no model",
)
