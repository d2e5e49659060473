"""The job-family registry: one record per family, and the only place that knows which
families exist. Outside a family's own packages (service/<family>/ and
workers/trainers/<family>/), code asks the registry instead of comparing family names.

A family registers itself when its `family` module is imported. The registry imports the
built-in families, and any module named in LABTRAIN_FAMILIES (a lab's own families, or a
test's), the first time it is asked. It imports them by name because it sits below them
in the layers (docs/architecture.md): a family may use the jobs package, never the reverse.
"""

from __future__ import annotations

import importlib
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel
from sqlalchemy import ColumnElement

from service.core.config import Settings
from service.core.db import Database
from service.core.errors import SpecError
from service.core.orm import Job, Model
from service.jobs.context import SubmitContext
from service.jobs.spec import Run, ValidatedJob

BUILTIN = (
    "service.classic.family",
    "service.network.family",
    "service.optimize.family",
    "service.code.family",
    "service.search.family",
    "service.competitions.family",
)


class Predictor(Protocol):
    """Answers predict for the models of one framework, in the API process."""

    def load(self, model: Model) -> Any:
        """The model ready to predict with (the API caches it)."""

    def predict(self, loaded: Any, model: Model, instances: Any, images: list[tuple[str, bytes]] | None) -> dict:
        """Predictions for JSON `instances`, or for uploaded `images` (name, bytes) where the model takes them."""

    def picture(self, model: Model) -> dict[str, Any] | None:
        """How the model's page offers a picture upload (the size pictures are resized to), or
        None; optional: a predictor without it offers none."""


class Driver(Protocol):
    """Runs a family's jobs inside the dispatcher instead of on a worker (a search)."""

    def due(self, session: Any, wakes: list[Any] | None = None) -> list[str]:
        """Its jobs that need a step now, read in the dispatcher's look (its transaction);
        `wakes`: the wake-ups that started the look (service/core/wakeups.py; None: unknown, a
        timer's or SQLite's), which may tell a driver that nothing of its can be due."""

    def run(self, due: list[str]) -> list[str]:
        """A step for each of `due`; returns the ids of the jobs the steps submitted."""

    def run_pending(self) -> list[str]: ...


@dataclass(frozen=True)
class SearchHooks:
    """How a hyperparameter search varies this family's jobs."""

    check: Callable[[Run, str], None]  # a 422 unless `name` is something a trial can vary
    apply: Callable[[dict[str, Any], Run, dict[str, Any]], dict[str, Any]]  # a trial's payload: params put in
    metric: Callable[[Run, str | None], str]  # the score trials are ranked by (or a 422)
    score: Callable[[Run, dict[str, Any] | None, str], float | None]  # a finished trial's score


def pick_score(available: list[str], asked: str | None) -> str:
    """The score trials are ranked by: the one asked for, or the first available."""
    metric = asked or available[0]
    if metric not in available:
        raise SpecError(f"metric must be one of {', '.join(available)} for this job", field="search.metric")
    return metric


def score_in(metrics: dict[str, Any] | None, name: str) -> float | None:
    """A finite number under `name` in a trial's metrics, else None."""
    value = (metrics or {}).get(name)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class Family:
    name: str  # what Job.family stores
    key: str  # the spec key that selects it
    summary: str  # the key as error messages list it
    request_model: type[BaseModel]  # what a user sends (the OpenAPI document shows it)
    run_model: type[Run]  # the validated spec: stored, and what the trainer receives
    validate: Callable[[dict[str, Any], SubmitContext], ValidatedJob]
    catalog_key: str  # its section of GET /api/v1/algorithms ...
    catalog: Callable[[], Any]  # ... and what the section holds
    kind: Callable[[dict[str, Any]], str]  # what a stored spec runs (algorithm, framework, ...), for metrics
    trainer: str | None = None  # the worker module with load_data(run, source) and train(run, data, report)
    makes_model: bool = True
    no_model: str = ""  # what such a job gives instead of a model (for the 409)
    takes_slot: bool = True  # False: never sent to a worker (its driver runs it)
    preemptible: bool = False  # its jobs can checkpoint and yield their slot (service/lab/preemption.py)
    budgeted: bool = True  # False: its jobs are the service's own work (a scoring), not a course budget's
    internal: bool = False  # True: the service makes its jobs; POST /jobs, the catalog and OpenAPI skip it
    predictors: Mapping[str, Predictor] = field(default_factory=dict)  # by model framework
    search: SearchHooks | None = None  # None: its jobs cannot carry a search
    wraps: bool = False  # its key wraps another family's spec (a search)
    driver: Callable[[Settings, Database, str], Driver] | None = None
    schemas: tuple[type[BaseModel], ...] = ()  # more models the OpenAPI document shows ...
    schema_patch: Callable[[dict[str, Any], Callable[[type[BaseModel]], dict[str, str]]], None] | None = None
    # ... and how it refines the generated schemas (given them and a function making a model's $ref)
    example: dict[str, Any] | None = None  # a spec the OpenAPI document shows, which POST /jobs accepts
    title: str = ""  # what the dashboard calls its jobs ("Neural network"); default: its name
    # What one of its GPU jobs holds of a GPU when the job says nothing (None: it runs none on a GPU).
    gpu_memory_mb: Callable[[Settings], int] | None = None


_families: dict[str, Family] = {}
_lock = threading.RLock()
_loaded = False
_loading = False


def register(family: Family) -> Family:
    _load()  # the built-in families first, so they keep their order whoever registers next
    if family.name in _families and _families[family.name] is not family:
        raise ValueError(f"a job family named {family.name!r} is registered already")
    _families[family.name] = family
    return family


def unregister(name: str) -> None:
    _families.pop(name, None)


def _load() -> None:
    global _loaded, _loading
    if _loaded:
        return
    with _lock:  # other threads wait here until the families are all in
        if _loaded or _loading:  # _loading: this thread's imports registering (the lock is re-entrant)
            return
        _loading = True
        try:
            for module in (*BUILTIN, *Settings.from_env().extra_families):
                importlib.import_module(module)
            _loaded = True
        finally:
            _loading = False


def all_families() -> list[Family]:
    _load()
    return list(_families.values())


def submittable() -> list[Family]:
    """The families users submit to (not the service's own, `internal`)."""
    return [f for f in all_families() if not f.internal]


def get(name: str) -> Family:
    _load()
    try:
        return _families[name]
    except KeyError:
        raise LookupError(f"no job family {name!r} is registered; is its module in LABTRAIN_FAMILIES?") from None


def chosen_by(payload: Any) -> Family:
    """The family a submitted spec selects by its key, or a 422 saying which keys there are."""
    if not isinstance(payload, dict):
        raise SpecError("the job spec must be a JSON object", field="body")
    candidates = [f for f in submittable() if not f.wraps]
    present = [f for f in candidates if f.key in payload]
    if len(present) != 1:
        raise SpecError(
            "a job spec names exactly one of: "
            + ", ".join(f.summary for f in candidates)
            + (f"; this one names {' and '.join(f.key for f in present)}" if present else ""),
            field=candidates[0].key if not present else present[1].key,
        )
    return present[0]


def wrapper_in(payload: dict[str, Any]) -> Family | None:
    """The family whose key wraps the spec (a search), when the payload carries one."""
    return next((f for f in submittable() if f.wraps and payload.get(f.key) is not None), None)


def slotless() -> list[str]:
    return [f.name for f in all_families() if not f.takes_slot]


def takes_slot() -> ColumnElement[bool]:
    """A filter for jobs that hold a worker slot while they run (what fair share and usage count)."""
    return Job.family.not_in(slotless())


def predictor(framework: str) -> Predictor | None:
    return next((f.predictors[framework] for f in all_families() if framework in f.predictors), None)


def picture_input(model: Model) -> dict[str, Any] | None:
    """What its predictor says of the pictures a model takes (None: none, or no predictor says)."""
    found = getattr(predictor(model.framework), "picture", None)
    return found(model) if found is not None else None


def default_gpu_memory_mb(family: str, settings: Settings) -> int:
    """What a GPU job of `family` holds when it says nothing (a job queued before GPUs were
    shared): its family's default, else the largest any family has."""
    _load()
    record = _families.get(family)
    if record is not None and record.gpu_memory_mb is not None:
        return record.gpu_memory_mb(settings)
    return max((f.gpu_memory_mb(settings) for f in all_families() if f.gpu_memory_mb is not None), default=0)
