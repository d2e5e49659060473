"""The PyTorch training loop, with the fast paths small networks need on a GPU.

Small networks are launch-bound: the time goes to starting kernels, not to the
arithmetic. So the whole data set lives on the device, each epoch's shuffle is one
permutation there, and on CUDA the whole training step (forward, backward, optimiser
step, running loss and accuracy) is captured once as a CUDA graph and replayed per
batch: one launch instead of dozens. The loop reads nothing back from the device until
an epoch ends. It imports only torch, so it runs wherever PyTorch does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class LoopConfig:
    epochs: int
    batch_size: int
    classification: bool
    outputs_probabilities: bool = False  # the network ends with softmax (else logits)
    regression_loss: str = "mse"  # mse | mae | huber (canonical names: service/network/losses.py)
    validation: tuple[torch.Tensor, torch.Tensor] | None = None
    seed: int = 0
    start_epoch: int = 0  # epochs already done (resuming from a checkpoint)
    cuda_graphs: bool = True
    warmup_steps: int = 3  # eager steps before capture, as CUDA graphs require


@dataclass
class EpochResult:
    epoch: int
    metrics: dict[str, float]
    seconds: float


class Stopped(Exception):
    """The loop was asked to stop (cancelled) between two batches."""


@dataclass
class LoopHooks:
    should_stop: Callable[[], bool] = lambda: False
    on_epoch: Callable[[EpochResult], bool | None] = lambda result: None  # True stops early
    history: list[EpochResult] = field(default_factory=list)


def make_loss(config: LoopConfig) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if config.classification:
        if config.outputs_probabilities:
            # The network already applies softmax: take the log and use the negative log-likelihood.
            return lambda out, y: nn.functional.nll_loss(torch.log(out.clamp_min(1e-12)), y)
        return nn.functional.cross_entropy
    base = {"mse": nn.functional.mse_loss, "mae": nn.functional.l1_loss, "huber": nn.functional.smooth_l1_loss}[
        config.regression_loss
    ]
    return lambda out, y: base(out.squeeze(-1), y)


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    config: LoopConfig,
    hooks: LoopHooks,
) -> list[EpochResult]:
    """Train in place; x and y already on the model's device. Returns one result per epoch run."""
    device = x.device
    loss_fn = make_loss(config)
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed + config.start_epoch)
    step = _Step(model, optimizer, loss_fn, config, x, y)
    n = x.shape[0]
    for epoch in range(config.start_epoch + 1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        step.reset_totals()
        order = torch.randperm(n, device=device, generator=generator)
        for begin in range(0, n, config.batch_size):
            if hooks.should_stop():
                raise Stopped()
            index = order[begin : begin + config.batch_size]
            step.run(x.index_select(0, index), y.index_select(0, index))
        metrics = step.epoch_metrics(n)
        if config.validation is not None:
            metrics.update({f"val_{k}": v for k, v in evaluate(model, *config.validation, config).items()})
        result = EpochResult(epoch, metrics, time.perf_counter() - started)
        hooks.history.append(result)
        if hooks.on_epoch(result):
            break
    return hooks.history


class _Step:
    """One training step, eager or replayed from a captured CUDA graph (one graph per batch size)."""

    def __init__(self, model, optimizer, loss_fn, config: LoopConfig, x: torch.Tensor, y: torch.Tensor):
        self.model, self.optimizer, self.loss_fn, self.config = model, optimizer, loss_fn, config
        device = x.device
        self.use_graphs = config.cuda_graphs and device.type == "cuda"
        self.loss_total = torch.zeros((), device=device)
        self.correct_total = torch.zeros((), device=device, dtype=torch.long)
        self.graphs: dict[int, tuple] = {}
        self.eager_steps = 0
        self.pool = None

    def reset_totals(self) -> None:
        self.loss_total.zero_()
        self.correct_total.zero_()

    def run(self, xb: torch.Tensor, yb: torch.Tensor) -> None:
        if not self.use_graphs or self.eager_steps < self.config.warmup_steps:
            self._eager(xb, yb)
            return
        size = xb.shape[0]
        if size not in self.graphs:
            self.graphs[size] = self._capture(xb, yb)
        graph, static_x, static_y = self.graphs[size]
        static_x.copy_(xb)
        static_y.copy_(yb)
        graph.replay()

    def _body(self, xb: torch.Tensor, yb: torch.Tensor) -> None:
        out = self.model(xb)
        loss = self.loss_fn(out, yb)
        loss.backward()
        self.optimizer.step()
        # Running totals stay on the device: nothing is read back until the epoch ends.
        self.loss_total.add_(loss.detach() * xb.shape[0])
        if self.config.classification:
            self.correct_total.add_((out.argmax(dim=1) == yb).sum())

    def _eager(self, xb: torch.Tensor, yb: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.use_graphs:
            # Warm-up steps before capture run on a side stream, as CUDA graphs require.
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                self._body(xb, yb)
            torch.cuda.current_stream().wait_stream(stream)
        else:
            self._body(xb, yb)
        self.eager_steps += 1

    def _capture(self, xb: torch.Tensor, yb: torch.Tensor):
        static_x, static_y = torch.empty_like(xb), torch.empty_like(yb)
        static_x.copy_(xb)
        static_y.copy_(yb)
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)  # each replay's backward then writes fresh gradients
        with torch.cuda.graph(graph, pool=self.pool):
            self._body(static_x, static_y)
        self.pool = graph.pool()  # graphs for other batch sizes share one memory pool
        # Capture records without running: the caller's replay performs this batch's step.
        return graph, static_x, static_y

    def epoch_metrics(self, n: int) -> dict[str, float]:
        metrics = {"loss": float(self.loss_total) / n}
        if self.config.classification:
            metrics["accuracy"] = int(self.correct_total) / n
        return metrics


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: LoopConfig, chunk: int = 4096
) -> dict[str, float]:
    model.eval()
    loss_fn = make_loss(config)
    loss_total, correct = 0.0, 0
    for begin in range(0, x.shape[0], chunk):
        xb, yb = x[begin : begin + chunk], y[begin : begin + chunk]
        out = model(xb)
        loss_total += float(loss_fn(out, yb)) * xb.shape[0]
        if config.classification:
            correct += int((out.argmax(dim=1) == yb).sum())
    metrics = {"loss": loss_total / x.shape[0]}
    if config.classification:
        metrics["accuracy"] = correct / x.shape[0]
    return metrics


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)])


def make_optimizer(
    name: str, params, learning_rate: float, momentum: float, weight_decay: float, device: torch.device
) -> torch.optim.Optimizer:
    """The optimiser with Keras's defaults where the frameworks differ; CUDA-graph safe on a GPU."""
    cuda = device.type == "cuda"
    if name == "adam":
        return torch.optim.Adam(
            params, lr=learning_rate, eps=1e-7, weight_decay=weight_decay, capturable=cuda, fused=cuda or None
        )
    if name == "adamw":
        return torch.optim.AdamW(
            params, lr=learning_rate, eps=1e-7, weight_decay=weight_decay, capturable=cuda, fused=cuda or None
        )
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=learning_rate, momentum=momentum, weight_decay=weight_decay, fused=cuda or None
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(
            params, lr=learning_rate, alpha=0.9, eps=1e-7, momentum=momentum, weight_decay=weight_decay, capturable=cuda
        )
    raise ValueError(f"unknown optimizer {name!r}")
