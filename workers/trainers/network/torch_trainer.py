"""Fitting a network with PyTorch: the data set moves to the device once, the loop in
torch_loop.py trains it, and every epoch is reported and checkpointed."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from service.data.arrays import ArrayData
from service.data.tasks import CLASSIFICATION
from service.network.spec import EarlyStopping, NetworkRun
from service.network.torch_builder import build_torch, count_parameters
from workers import gpu_share
from workers.trainers.base import Allotment, Cancelled, Reporter, TrainedModel
from workers.trainers.network.common import (
    epoch_report,
    held_out_metrics,
    input_preparation,
    keep_last_checkpoint,
    resume,
    save_checkpoint,
    split_validation,
    trained_network,
)
from workers.trainers.network.torch_loop import (
    EpochResult,
    LoopConfig,
    LoopHooks,
    Stopped,
    evaluate,
    fit,
    make_optimizer,
    predict,
)

SUFFIX = ".pt"


def pick_device(requested: str, report: Reporter) -> torch.device:
    if requested != "cpu" and torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "gpu":
        # A gpu-queue worker on a host without a usable GPU still trains; the result says where.
        report.event("log", {"message": "no CUDA device is visible to this worker; training on the CPU"})
    return torch.device("cpu")


def as_tensors(x: np.ndarray, y: np.ndarray, classification: bool, device: torch.device):
    # Images stay uint8 on the device (a quarter of float32's memory); the model scales them.
    features = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    targets = torch.from_numpy(np.ascontiguousarray(y)).to(device)
    return features, targets.long() if classification else targets.float()


class EarlyStopper:
    """Keras's EarlyStopping rules: stop after `patience` epochs without an improvement of min_delta."""

    def __init__(self, rule: EarlyStopping | None, model: torch.nn.Module):
        self.rule, self.model = rule, model
        self.best: float | None = None
        self.best_state: dict | None = None
        self.waited = 0

    def should_stop(self, metrics: dict[str, float]) -> bool:
        if not self.rule or self.rule.monitor not in metrics:
            return False
        value = metrics[self.rule.monitor]
        sign = -1.0 if self.rule.monitor.endswith("accuracy") else 1.0  # accuracy improves upwards
        if self.best is None or sign * (value - self.best) < -self.rule.min_delta:
            self.best, self.waited = value, 0
            if self.rule.restore_best_weights:
                self.best_state = copy.deepcopy(self.model.state_dict())
            return False
        self.waited += 1
        return self.waited > self.rule.patience

    def restore(self) -> None:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)


def save_weights(model: torch.nn.Module, path: Path) -> None:
    # Weights only: predict rebuilds the module from the stored layer list and loads them with
    # weights_only=True (DESIGN.md decision 7).
    torch.save(model.state_dict(), path)


def train_torch(run: NetworkRun, data: ArrayData, report: Reporter, allotted: Allotment) -> TrainedModel:
    device = pick_device(run.device, report)
    if device.type == "cuda":
        gpu_share.limit_torch(allotted.gpu_memory_mb, device)  # the job's share of a shared GPU
    with gpu_share.failing_on_gpu_oom(allotted.gpu_memory_mb):
        return _train_torch(run, data, report, allotted, device)


def _train_torch(
    run: NetworkRun, data: ArrayData, report: Reporter, allotted: Allotment, device: torch.device
) -> TrainedModel:
    training, network = run.training, run.network
    classification = data.task == CLASSIFICATION
    torch.manual_seed(training.seed)
    prepare = input_preparation(data)
    model = build_torch(network.layers, tuple(run.input_shape), network.api, prepare).to(device)
    optimizer = make_optimizer(
        training.optimizer, model.parameters(), training.learning_rate, training.momentum, training.weight_decay, device
    )
    start_epoch = 0
    resumed = resume(
        report, allotted.checkpoint_dir, SUFFIX, lambda path: torch.load(path, map_location=device, weights_only=True)
    )
    if resumed is not None:
        state, start_epoch = resumed
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])

    x_fit, y_fit, x_val, y_val = split_validation(data, training.validation_split)
    x, y = as_tensors(x_fit, y_fit, classification, device)
    validation = as_tensors(x_val, y_val, classification, device) if x_val is not None else None
    config = LoopConfig(
        epochs=training.epochs,
        batch_size=training.batch_size,
        classification=classification,
        outputs_probabilities=run.outputs_probabilities,
        regression_loss=training.canonical_loss,
        validation=validation,
        seed=training.seed,
        start_epoch=start_epoch,
    )
    stopper = EarlyStopper(training.early_stopping, model)

    def on_epoch(result: EpochResult) -> bool:
        # Report, then checkpoint (see keras_trainer.ServiceCallback).
        epoch_report(report, result.epoch, config.epochs, result.metrics, result.seconds)
        if allotted.checkpoint_due(last=result.epoch == config.epochs):
            state = {"epoch": result.epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict()}
            save_checkpoint(allotted.checkpoint_dir, result.epoch, SUFFIX, lambda path: torch.save(state, path))
        return stopper.should_stop(result.metrics)

    try:
        history = fit(model, optimizer, x, y, config, LoopHooks(should_stop=allotted.stop_requested, on_epoch=on_epoch))
    except Stopped:
        raise Cancelled() from None
    stopper.restore()
    keep_last_checkpoint(allotted.checkpoint_dir, SUFFIX)

    x_test, y_test = as_tensors(data.x_test, data.y_test, classification, device)
    test_loss = evaluate(model, x_test, y_test, config)["loss"]
    outputs = predict(model, x_test).float().cpu().numpy()
    metrics = held_out_metrics(data, outputs, test_loss)
    metrics["epochs_run"] = start_epoch + len(history)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return trained_network(
        run,
        data,
        prepare,
        artifact=model.cpu(),
        write=save_weights,
        suffix=SUFFIX,
        metrics=metrics,
        summary=summary_text(model),
        parameters=count_parameters(model),
        device=device_name,
    )


def summary_text(model: torch.nn.Module) -> str:
    counts = count_parameters(model)
    return (
        f"{model}\n\nTrainable params: {counts['trainable']:,}\n"
        f"Non-trainable params (buffers): {counts['non_trainable']:,}\nTotal params: {counts['total']:,}"
    )
