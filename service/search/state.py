"""What a search remembers between steps, kept as JSON in its job folder.

The trials (their parameters, scores and models), the order their scores came in, the
best-so-far curve and, for a metaheuristic, the optimiser's own state (as data: see
service/metaheuristics/state.py). Optuna keeps its trials in its own journal (studies.py); its samplers
hold nothing that matters between steps, so each step builds its sampler anew from the
spec. Nothing here names a module path, so moving code cannot break a running search.

Searches started before the state became JSON kept a pickle instead; it is read once,
with only the classes it can name mapped to where they live now, and rewritten as JSON.
"""

from __future__ import annotations

import importlib
import io
import json
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from service.core import storage
from service.metaheuristics import METAHEURISTICS, OPTIMIZERS, Dimension, Optimizer, Space
from service.metaheuristics.state import dump_state, load_state
from service.search.spec import SearchPlan

STATE_FILE = "search-state.json"
LEGACY_STATE_FILE = "search-state.pickle"
QUEUED = "queued"


@dataclass
class TrialRecord:
    number: int
    params: dict[str, Any]
    job_id: str | None = None
    value: float | None = None
    status: str = QUEUED
    error: str | None = None
    model_id: str | None = None
    metrics: dict[str, Any] | None = None

    def view(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "id": self.job_id,
            "params": self.params,
            "value": self.value,
            "status": self.status,
            "error": self.error,
        }


@dataclass
class SearchState:
    optimizer: Optimizer | None  # a metaheuristic's; None for Optuna's samplers
    trials: dict[int, TrialRecord] = field(default_factory=dict)
    told: list[int] = field(default_factory=list)  # trial numbers in the order their scores came
    curve: list[float | None] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "trials": [asdict(record) for record in self.trials.values()],
            "told": self.told,
            "curve": self.curve,
            "optimizer": dump_state(self.optimizer) if self.optimizer is not None else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], search: SearchPlan) -> SearchState:
        optimizer = new_optimizer(search)
        if optimizer is not None and data.get("optimizer") is not None:
            load_state(optimizer, data["optimizer"])
        trials = {record["number"]: TrialRecord(**record) for record in data["trials"]}
        return cls(optimizer, trials, list(data["told"]), list(data["curve"]))


def new_optimizer(search: SearchPlan) -> Optimizer | None:
    """The search's metaheuristic, fresh; None when Optuna samples (grid, random, tpe)."""
    if search.strategy not in METAHEURISTICS:
        return None
    space = Space(
        tuple(
            Dimension(
                name,
                dim["type"],
                dim.get("low") or 0.0,
                dim.get("high") or 1.0,
                dim.get("log", False),
                tuple(dim.get("choices") or ()),
            )
            for name, dim in search.space.items()
        )
    )
    return OPTIMIZERS[search.strategy](space, search.trials, search.seed, **search.params)


def load(folder: Path, search: SearchPlan) -> SearchState:
    path = folder / STATE_FILE
    if path.exists():
        return SearchState.from_json(json.loads(path.read_text()), search)
    legacy = folder / LEGACY_STATE_FILE
    if legacy.exists():
        state = from_legacy_pickle(legacy.read_bytes(), search)
        save(folder, state)
        legacy.unlink()
        return state
    return SearchState(optimizer=new_optimizer(search))


def save(folder: Path, state: SearchState) -> None:
    storage.write_atomically(folder / STATE_FILE, json.dumps(state.to_json()).encode())


# -- searches started before the state was JSON --------------------------------------------
class _Saved:
    """Whatever an old SearchState held, attribute by attribute."""


# Where the classes an old state file names live now.
_MOVED = {
    ("service.search", "SearchState"): _Saved,
    ("service.search", "TrialRecord"): TrialRecord,
    ("service.optimizers.base", "Space"): Space,
    ("service.optimizers.base", "Dimension"): Dimension,
}
_TRUSTED_PREFIXES = ("numpy", "optuna", "builtins", "copyreg", "collections")


class _LegacyUnpickler(pickle.Unpickler):
    """Reads a state file this service wrote before: its own classes by their new home, the
    optimisers by name, numpy and Optuna as they are; refuses any other class."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _MOVED:
            return _MOVED[(module, name)]
        if module.startswith("service.optimizers.algorithms."):
            found = next((cls for cls in OPTIMIZERS.values() if cls.__name__ == name), None)
            if found is not None:
                return found
        elif module == "service.search_grid":
            return getattr(importlib.import_module("service.search.grid"), name)
        elif module.split(".")[0] in _TRUSTED_PREFIXES:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"an old search state names {module}.{name}, which it may not")


def from_legacy_pickle(data: bytes, search: SearchPlan) -> SearchState:
    saved = _LegacyUnpickler(io.BytesIO(data)).load()
    optimizer = saved.strategy if isinstance(saved.strategy, Optimizer) else None
    if optimizer is None and search.strategy in METAHEURISTICS:
        optimizer = new_optimizer(search)
    return SearchState(optimizer, dict(saved.trials), list(saved.told), list(saved.curve))
