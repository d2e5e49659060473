"""Code job specs (`code`): what a user sends, and the run it becomes once checked
(service/code/validate.py), as stored and as the code trainer receives it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.core.schema import Strict
from service.jobs.spec import JobSpec, Run

Arg = str


class CodeDef(Strict):
    source: str = Field(min_length=1, max_length=64, description="The id POST /api/v1/sources gave")
    entrypoint: str | None = Field(
        None, min_length=1, max_length=1024, description="The .py or .ipynb file to run; default: the source's only one"
    )
    args: list[Arg] = Field(
        default_factory=list,
        max_length=200,
        description="Its command-line arguments; {name} is replaced by a search's value",
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        max_length=200,
        description="A notebook's parameters: set in a cell after the one tagged `parameters` (papermill's "
        "convention); a search varies them by name",
    )


class Resources(Strict):
    memory_mb: int | None = Field(
        None,
        ge=64,
        le=1_048_576,
        description="Memory the job may use; over it, "
        "the job is killed (default and upper bound: GET /api/v1/algorithms, code)",
    )
    cpus: int | None = Field(None, ge=1, le=256, description="CPUs the job's processes may use at once")
    time_limit_s: int | None = Field(None, ge=1, description="Run time allowed (at most your limit)")
    gpu_memory_mb: int | None = Field(
        None, ge=1, description="GPU memory the job holds on a shared GPU (default: the lab's setting for code jobs)"
    )


class CodeSpec(JobSpec):
    dataset: Any = Field(
        None,
        description='A built-in name, {"id": ...} or {"course": ..., "name": ...}: mounted read-only, '
        "its path in $JOB_DATASET",
    )
    code: CodeDef
    resources: Resources = Field(default_factory=Resources)


class CodePlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str
    entrypoint: str
    args: list[str]
    parameters: dict[str, Any] = {}  # a notebook's (stored specs from before notebooks have none)


class ResourcePlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    memory_mb: int
    cpus: int
    time_limit_s: int


class CodeRun(Run):
    """A code job as stored and as its trainer receives it."""

    dataset: str | dict[str, Any] | None = None
    code: CodePlan
    resources: ResourcePlan
    device: Literal["cpu", "gpu"]
    device_requested: Literal["auto", "cpu", "gpu"]
