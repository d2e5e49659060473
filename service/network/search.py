"""How a hyperparameter search varies a network job: its training options, every hidden
dense layer's units and every dropout layer's rate."""

from __future__ import annotations

import copy
from typing import Any

from service.core.errors import SpecError
from service.data.tasks import CLASSIFICATION
from service.jobs.families import SearchHooks, pick_score, score_in
from service.network.spec import NetworkRun, Training

# Names a search may use besides the training options, and the layers each one changes.
LAYER_KEYS = {"units": "dense", "dropout": "dropout"}
SCORES = {CLASSIFICATION: ["accuracy", "f1_macro", "test_loss"]}
REGRESSION_SCORES = ["r2", "mae", "rmse", "test_loss"]


def searchable() -> list[str]:
    return [*(name for name in Training.model_fields if name != "early_stopping"), *LAYER_KEYS]


def check(run: NetworkRun, name: str) -> None:
    field = f"search.space.{name}"
    if name not in searchable():
        raise SpecError(f"a network search can vary {', '.join(searchable())}; not {name!r}", field=field)
    if name in LAYER_KEYS:
        layers = run.network.layers
        dense = [layer for layer in layers if layer["type"] == "dense"]
        present = len(dense) > 1 if name == "units" else any(layer["type"] == "dropout" for layer in layers)
        if not present:
            raise SpecError(
                f"this network has no {'hidden dense' if name == 'units' else 'dropout'} layer for {name!r} to change",
                field=field,
            )


def apply(payload: dict[str, Any], run: NetworkRun, params: dict[str, Any]) -> dict[str, Any]:
    trial = copy.deepcopy(payload)
    for name, value in params.items():
        if name in LAYER_KEYS:
            network = trial["network"]
            if network.get("layers") is None:
                # A preset names no layers: trials carry the preset's layer list, sized for the data.
                network.pop("preset", None)
                network["layers"] = copy.deepcopy(run.network.layers)
            _set_on_layers(network["layers"], LAYER_KEYS[name], value)
        else:
            trial.setdefault("training", {})[name] = value
    return trial


def _set_on_layers(layers: list[dict[str, Any]], kind: str, value: Any) -> None:
    dense = [i for i, layer in enumerate(layers) if layer.get("type") == "dense"]
    for index, layer in enumerate(layers):
        if kind == "dense" and index in dense[:-1]:  # the last dense layer is the output
            layer["units"] = value
        elif kind == "dropout" and layer.get("type") == "dropout":
            layer["rate"] = value


def metric(run: NetworkRun, asked: str | None) -> str:
    return pick_score(SCORES.get(run.task, REGRESSION_SCORES), asked)


def score(run: NetworkRun, metrics: dict[str, Any] | None, name: str) -> float | None:
    return score_in(metrics, name)


HOOKS = SearchHooks(check=check, apply=apply, metric=metric, score=score)
