"""The network family's record in the job-family registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from service.jobs.families import Family, register
from service.network import search
from service.network.layers import LAYER_TYPES, MAX_LAYERS
from service.network.predict import NetworkPredictor
from service.network.spec import NetworkRun, NetworkSpec, catalog
from service.network.validate import validate_network

PREDICTOR = NetworkPredictor()


def layers_schema(schemas: dict[str, Any], ref: Callable[[type[BaseModel]], dict[str, str]]) -> None:
    """The spec takes `layers` as Any and checks each layer by its type's model afterwards (so
    an error names the layer); the OpenAPI document shows those models."""
    schemas["NetworkDef"]["properties"]["layers"] = {
        "default": None,
        "anyOf": [
            {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_LAYERS,
                "items": {"anyOf": [ref(m) for m in LAYER_TYPES.values()]},
            },
            {"type": "null"},
        ],
    }


FAMILY = register(
    Family(
        name="network",
        key="framework",
        summary="framework (a network)",
        title="Neural network",
        request_model=NetworkSpec,
        run_model=NetworkRun,
        validate=validate_network,
        catalog_key="networks",
        catalog=catalog,
        kind=lambda spec: spec.get("framework", "unknown"),
        trainer="workers.trainers.network",
        preemptible=True,  # it checkpoints at an epoch's end and stops there when asked
        predictors={"tensorflow": PREDICTOR, "pytorch": PREDICTOR},
        search=search.HOOKS,
        schemas=tuple(LAYER_TYPES.values()),
        schema_patch=layers_schema,
        example={
            "dataset": "mnist",
            "framework": "tensorflow",
            "network": {
                "api": "sequential",
                "layers": [
                    {"type": "flatten"},
                    {"type": "dense", "units": 128, "activation": "relu"},
                    {"type": "dropout", "rate": 0.2},
                    {"type": "dense", "units": 10, "activation": "softmax"},
                ],
            },
            "training": {
                "epochs": 5,
                "batch_size": 32,
                "optimizer": "adam",
                "learning_rate": 0.001,
                "loss": "sparse_categorical_crossentropy",
                "metrics": ["accuracy"],
            },
            "device": "auto",
        },
        gpu_memory_mb=lambda settings: settings.gpu_memory_network_mb,
    )
)
