"""What every job family's spec shares.

Each family has two models: what a user sends (its request model, checked strictly and
shown in the OpenAPI document), and the run: the spec after validation, complete and
normalized. The run is what the job row stores, what the API shows as `spec`, and what the
worker re-validates and hands its trainer, typed. These models import no database code,
so trainers can take them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.core.errors import spec_error_from
from service.core.schema import Strict
from service.jobs.tiers import BATCH, TIER_HELP, Tier

QUEUE_HELP = (
    "The queue to run in: cpu, gpu or one an admin added (GET /api/v1/queue lists them); "
    "without it, cpu or gpu by the device"
)


class JobSpec(Strict):
    """The fields every family's request model has."""

    name: str | None = Field(None, min_length=1, max_length=255)
    dataset: Any = Field(
        description='A built-in name, {"id": ..., "target": ...} or a course\'s {"course": ..., "name": ..., "target": ...}'
    )
    device: Literal["auto", "cpu", "gpu"] = "auto"
    queue: str | None = Field(None, min_length=1, max_length=64, description=QUEUE_HELP)
    search: Any = Field(None, description="A hyperparameter search over this spec (service/search/spec.py)")
    tier: Tier = Field(BATCH, description=TIER_HELP)


class Run(BaseModel):
    """A validated spec, as stored. Not strict: it is read back from JSON, where a tuple is a list."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None

    def stored(self) -> dict[str, Any]:
        """What the job row keeps (and the API shows as the job's spec)."""
        return self.model_dump(mode="json")

    def uploaded_dataset_id(self) -> str | None:
        """The id of the uploaded data set the job reads, if it reads one."""
        dataset = getattr(self, "dataset", None)
        return dataset.get("id") if isinstance(dataset, dict) else None

    @property
    def keeps_checkpoints(self) -> bool:
        """Whether the job's checkpoints outlive it (networks may ask for it)."""
        return False


@dataclass
class ValidatedJob:
    family: str
    run: Run
    queue: str
    name: str | None
    time_limit_s: int | None = None  # where the spec asks for less run time than the user's limit
    gpu_memory_mb: int | None = None  # what a GPU job holds of its GPU (service/lab/gpu_requests.py)
    tier: str = BATCH  # as the spec asks: debug or batch (service/jobs/tiers.py)

    @property
    def spec(self) -> dict[str, Any]:
        return self.run.stored()


def parse_spec(model: type[BaseModel], payload: Any, prefix: str = "") -> Any:
    """The payload as `model`, or a 422 naming the first bad field."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise spec_error_from(exc, model, prefix=prefix) from None
