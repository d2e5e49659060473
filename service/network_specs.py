"""Network job specs (`framework` + `network`): parsed, checked against the data, completed.

A layer list that cannot connect, an output layer of the wrong size or a loss that
does not fit the task is a 422 at submit time naming the field, never a failed job.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

from pydantic import Field

from service.algorithms import CLASSIFICATION, REGRESSION
from service.errors import SpecError
from service.nets.layers import ends_with_softmax, infer_shapes, parameter_counts, validate_layers
from service.nets.presets import PRESETS, preset_layers
from service.specs import JobSpec, Strict, ValidatedJob, parse_spec

APIS = {"tensorflow": ("sequential", "functional", "subclassing"), "pytorch": ("sequential", "module")}
CLASSIFICATION_LOSSES = ("sparse_categorical_crossentropy",)
REGRESSION_LOSSES = ("mse", "mae")


class NetworkDef(Strict):
    preset: Literal["mlp", "feedforward", "lenet"] | None = None
    api: Literal["sequential", "functional", "subclassing", "module"] | None = None
    layers: Any = None


class EarlyStopping(Strict):
    monitor: Literal["loss", "accuracy", "val_loss", "val_accuracy"] = "val_loss"
    patience: int = Field(3, ge=0, le=1000, description="Epochs without improvement before stopping")
    min_delta: float = Field(0.0, ge=0)
    restore_best_weights: bool = False


class Training(Strict):
    epochs: int = Field(5, ge=1, le=1000)
    batch_size: int = Field(32, ge=1, le=65_536)
    optimizer: Literal["adam", "sgd", "rmsprop", "adamw"] = "adam"
    learning_rate: float = Field(1e-3, gt=0, le=10)
    momentum: float = Field(0.0, ge=0, lt=1, description="sgd and rmsprop")
    weight_decay: float | None = Field(None, ge=0, le=1, description="Default 0.004 for adamw, else 0")
    loss: Literal["sparse_categorical_crossentropy", "mse", "mae"] | None = Field(
        None, description="Default: sparse_categorical_crossentropy for classes, mse for numbers")
    metrics: list[Literal["accuracy", "mae", "mse"]] | None = None
    validation_split: float = Field(0.0, ge=0, lt=1, description="Last fraction of the training rows, as Keras takes it")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    early_stopping: EarlyStopping | None = None
    keep_checkpoints: bool = Field(False, description="Keep the per-epoch checkpoints after the job ends")


class NetworkEvaluation(Strict):
    test_size: float = Field(0.2, gt=0, lt=1, description="Held out when the data set has no test part")
    seed: int = Field(0, ge=0, le=2**32 - 1)


class NetworkSpec(JobSpec):
    framework: Literal["tensorflow", "pytorch"]
    network: NetworkDef
    training: Training = Field(default_factory=Training)
    evaluation: NetworkEvaluation = Field(default_factory=NetworkEvaluation)


@dataclass
class ArrayView:
    """What the checks need to know of a network's data set."""

    spec_value: Any
    input_shape: tuple[int, ...]
    task: str
    n_outputs: int
    rows: int


ArrayResolver = Callable[[Any], ArrayView]


def validate_network(payload: dict[str, Any], resolve: ArrayResolver, gpu_online: Callable[[], bool]) -> ValidatedJob:
    spec = parse_spec(NetworkSpec, payload)
    api = spec.network.api or "sequential"
    if api not in APIS[spec.framework]:
        raise SpecError(f"{spec.framework} builds networks with api {' or '.join(APIS[spec.framework])}, "
                        f"not {api}", field="network.api")
    if (spec.network.preset is None) == (spec.network.layers is None):
        raise SpecError("give the network either a preset (mlp, feedforward, lenet) or a layers list",
                        field="network.layers" if spec.network.preset is None else "network.preset")

    data = resolve(spec.dataset)
    if spec.network.preset:
        layers = validate_layers(preset_layers(spec.network.preset, data.n_outputs, data.input_shape),
                                 field="network.preset")
        shapes = infer_shapes(layers, data.input_shape, field="network.preset")
    else:
        layers = validate_layers(spec.network.layers)
        shapes = infer_shapes(layers, data.input_shape)
    if shapes[-1].output != (data.n_outputs,):
        what = f"{data.n_outputs} classes" if data.task == CLASSIFICATION else "one number to predict"
        raise SpecError(f"the last layer gives shape {list(shapes[-1].output)}, but the data has {what}; "
                        f"end with a dense layer of {data.n_outputs} units", field=f"network.layers.{len(layers) - 1}",
                        code="invalid_network")
    training = _check_training(spec.training, data.task)
    queue = _queue_for(spec.device, gpu_online)
    normalized = {
        "name": spec.name,
        "dataset": data.spec_value,
        "framework": spec.framework,
        "task": data.task,
        "network": {"preset": spec.network.preset, "api": api, "layers": layers},
        "input_shape": list(data.input_shape),
        "outputs_probabilities": ends_with_softmax(layers),
        "parameters": parameter_counts(shapes),
        "training": training,
        "evaluation": spec.evaluation.model_dump(),
        "device": queue,  # where `auto` was sent: the trainer uses a GPU on the gpu queue
        "device_requested": spec.device,
    }
    return ValidatedJob(family="network", spec=normalized, queue=queue, name=spec.name)


def _check_training(training: Training, task: str) -> dict[str, Any]:
    result = training.model_dump()
    allowed = CLASSIFICATION_LOSSES if task == CLASSIFICATION else REGRESSION_LOSSES
    result["loss"] = training.loss or allowed[0]
    if result["loss"] not in allowed:
        raise SpecError(f"loss {training.loss!r} does not fit {task}; use {' or '.join(allowed)}", field="training.loss")
    result["metrics"] = training.metrics or (["accuracy"] if task == CLASSIFICATION else ["mae"])
    if task == REGRESSION and "accuracy" in result["metrics"]:
        raise SpecError("accuracy is for classes; use mae or mse for numbers", field="training.metrics")
    stopping = training.early_stopping
    if stopping is not None:
        if stopping.monitor.startswith("val_") and training.validation_split == 0:
            raise SpecError(f"early stopping on {stopping.monitor} needs a validation_split above 0",
                            field="training.early_stopping.monitor")
        if stopping.monitor.endswith("accuracy") and task != CLASSIFICATION:
            raise SpecError("accuracy is for classes; monitor loss or val_loss", field="training.early_stopping.monitor")
    if result["weight_decay"] is None:
        result["weight_decay"] = 0.004 if training.optimizer == "adamw" else 0.0
    return result


def _queue_for(device: str, gpu_online: Callable[[], bool]) -> str:
    if device == "gpu":
        return "gpu"
    if device == "auto" and gpu_online():
        return "gpu"
    return "cpu"


def presets_catalog() -> list[dict[str, Any]]:
    return [{"name": name, "title": preset["title"], "frameworks": list(APIS)} for name, preset in PRESETS.items()]


def training_catalog() -> list[dict[str, Any]]:
    from service.algorithms import describe_params

    return describe_params(Training)
