"""Checking a network job spec at submit time: a layer list that cannot connect, an output
layer of the wrong size or a loss that does not fit the task is a 422 naming the field,
never a failed job."""

from __future__ import annotations

import math
from typing import Any

from service.core.config import Settings
from service.core.errors import SpecError
from service.data.tasks import CLASSIFICATION, REGRESSION
from service.jobs.context import SubmitContext
from service.jobs.spec import ValidatedJob, parse_spec
from service.lab.devices import place
from service.lab.gpu_requests import gpu_memory_for
from service.network import losses
from service.network.layers import ends_with_softmax, infer_shapes, parameter_counts, validate_layers
from service.network.presets import preset_layers
from service.network.spec import APIS, NetworkPlan, NetworkRun, NetworkSpec, Training, TrainingPlan


def validate_network(payload: dict[str, Any], ctx: SubmitContext) -> ValidatedJob:
    spec = parse_spec(NetworkSpec, payload)
    api = spec.network.api or "sequential"
    if api not in APIS[spec.framework]:
        raise SpecError(
            f"{spec.framework} builds networks with api {' or '.join(APIS[spec.framework])}, not {api}",
            field="network.api",
        )
    if (spec.network.preset is None) == (spec.network.layers is None):
        raise SpecError(
            "give the network either a preset (mlp, feedforward, lenet) or a layers list",
            field="network.layers" if spec.network.preset is None else "network.preset",
        )

    data = ctx.data.arrays(spec.dataset, spec.image.model_dump() if spec.image else None)
    if spec.network.preset:
        layers = validate_layers(
            preset_layers(spec.network.preset, data.n_outputs, data.input_shape), field="network.preset"
        )
        shapes = infer_shapes(layers, data.input_shape, field="network.preset")
    else:
        layers = validate_layers(spec.network.layers)
        shapes = infer_shapes(layers, data.input_shape)
    if shapes[-1].output != (data.n_outputs,):
        what = f"{data.n_outputs} classes" if data.task == CLASSIFICATION else "one number to predict"
        raise SpecError(
            f"the last layer gives shape {list(shapes[-1].output)}, but the data has {what}; "
            f"end with a dense layer of {data.n_outputs} units",
            field=f"network.layers.{len(layers) - 1}",
            code="invalid_network",
        )
    training = _check_training(spec.training, data.task)
    placement = place(ctx, spec.device, spec.queue)
    run = NetworkRun(
        name=spec.name,
        dataset=data.spec_value,
        framework=spec.framework,
        task=data.task,
        network=NetworkPlan(preset=spec.network.preset, api=api, layers=layers),
        input_shape=list(data.input_shape),
        outputs_probabilities=ends_with_softmax(layers),
        parameters=parameter_counts(shapes),
        training=training,
        evaluation=spec.evaluation,
        device=placement.device,
        device_requested=spec.device,
        image=data.image,
    )
    gpu_memory = gpu_memory_for(
        ctx.session,
        placement.device,
        spec.resources.gpu_memory_mb,
        default_gpu_memory_mb(ctx.settings, run),
        queue=spec.queue,  # a named queue's GPUs; else any online
    )
    return ValidatedJob(
        family="network", run=run, queue=placement.queue, name=spec.name, gpu_memory_mb=gpu_memory, tier=spec.tier
    )


def _check_training(training: Training, task: str) -> TrainingPlan:
    allowed = losses.for_task(task)
    loss = training.loss or losses.DEFAULT[task]
    if losses.BY_NAME[loss].task != task:
        raise SpecError(
            f"loss {training.loss!r} does not fit {task}; use {' or '.join(allowed)} (or PyTorch's "
            "names for them: GET /api/v1/algorithms lists every loss)",
            field="training.loss",
        )
    metrics = training.metrics or (["accuracy"] if task == CLASSIFICATION else ["mae"])
    if task == REGRESSION and "accuracy" in metrics:
        raise SpecError("accuracy is for classes; use mae or mse for numbers", field="training.metrics")
    stopping = training.early_stopping
    if stopping is not None:
        if stopping.monitor.startswith("val_") and training.validation_split == 0:
            raise SpecError(
                f"early stopping on {stopping.monitor} needs a validation_split above 0",
                field="training.early_stopping.monitor",
            )
        if stopping.monitor.endswith("accuracy") and task != CLASSIFICATION:
            raise SpecError(
                "accuracy is for classes; monitor loss or val_loss", field="training.early_stopping.monitor"
            )
    weight_decay = training.weight_decay
    if weight_decay is None:
        weight_decay = 0.004 if training.optimizer == "adamw" else 0.0
    return TrainingPlan.model_validate(
        {**training.model_dump(), "loss": loss, "metrics": metrics, "weight_decay": weight_decay}
    )


# Per parameter on the GPU: the weights, their gradients and Adam's two moments, in float32.
BYTES_PER_PARAMETER = 16


def default_gpu_memory_mb(settings: Settings, run: NetworkRun) -> int:
    """What a network holds of a shared GPU when it does not say: the lab's setting for networks
    (room for the framework's workspace and a batch's activations; an MNIST network needs no
    more), plus its parameters' training state, so a large preset asks for more."""
    state_mb = run.parameters["total"] * BYTES_PER_PARAMETER / 2**20
    return settings.gpu_memory_network_mb + math.ceil(state_mb)
