"""PyTorch trainers on a GPU against a naive loop, one epoch of 60,000 28x28 samples.

The naive loop is what a course notebook does: a DataLoader over CPU tensors and
`.to(device)` per batch. labtrain's loop keeps the data on the device and replays the
captured training step (workers/trainers/torch_loop.py). Both train the same module
(service/network/torch_builder.py) from the same initial weights, in the same run.

    python bench/gpu_trainers.py [--samples 60000] [--mnist PATH] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.data.arrays import ArrayData
from service.network.layers import ends_with_softmax, infer_shapes, parameter_counts, validate_layers
from service.network.presets import preset_layers
from service.network.spec import NetworkRun, Training
from service.network.torch_builder import build_torch
from workers.trainers.base import Allotment
from workers.trainers.network.torch_loop import LoopConfig, LoopHooks, evaluate, fit, make_optimizer
from workers.trainers.network.torch_trainer import train_torch

SHAPE = (28, 28, 1)


def build(name: str, device: torch.device, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    layers = validate_layers(preset_layers(name, 10, SHAPE))
    return build_torch(layers, SHAPE, "sequential", {"scale": 1 / 255}).to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def naive_epoch(name: str, x: torch.Tensor, y: torch.Tensor, batch: int, device: torch.device) -> float:
    model = build(name, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch, shuffle=True)
    running = torch.zeros((), device=device)  # kept on the device: no per-batch sync, to be fair
    sync(device)
    start = time.perf_counter()
    model.train()
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        optimizer.step()
        running += loss.detach()
    sync(device)
    return time.perf_counter() - start


def labtrain_epochs(
    name: str, x: torch.Tensor, y: torch.Tensor, batch: int, device: torch.device, epochs: int = 2, graphs: bool = True
) -> list[float]:
    model = build(name, device)
    optimizer = make_optimizer("adam", model.parameters(), 1e-3, 0.0, 0.0, device)
    xd, yd = x.to(device), y.to(device)
    config = LoopConfig(epochs=epochs, batch_size=batch, classification=True, cuda_graphs=graphs)
    sync(device)
    times, last = [], [time.perf_counter()]

    def on_epoch(_result):
        sync(device)
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    fit(model, optimizer, xd, yd, config, LoopHooks(on_epoch=on_epoch))
    return times


def real_data_check(path: Path, device: torch.device) -> dict:
    """Train on real digits with the fast path and check it learns as the eager path does."""
    data = np.load(path)
    x, y = torch.from_numpy(data["x_train"][..., None]), torch.from_numpy(data["y_train"]).long()
    xt, yt = torch.from_numpy(data["x_test"][..., None]).to(device), torch.from_numpy(data["y_test"]).long().to(device)
    results = {}
    for name in ("feedforward", "lenet"):
        for graphs in (True, False):
            model = build(name, device)
            optimizer = make_optimizer("adam", model.parameters(), 1e-3, 0.0, 0.0, device)
            config = LoopConfig(epochs=3, batch_size=256, classification=True, cuda_graphs=graphs)  # 6000 % 256 != 0
            fit(model, optimizer, x.to(device), y.to(device), config, LoopHooks())
            results[f"{name}/{'graphs' if graphs else 'eager'}"] = evaluate(model, xt, yt, config)["accuracy"]
    return results


class _Reporter:
    """The least a trainer reports to: it records epochs."""

    def __init__(self):
        self.epochs = []

    def event(self, type_, data):
        if type_ == "epoch":
            self.epochs.append(data)

    def progress(self, **fields):
        pass

    def output(self, stream, line):
        pass


def service_trainer_check(path: Path) -> dict:
    """The service's PyTorch trainer as a job runs it: device choice, checkpoints, resume, metrics."""
    data = np.load(path)
    arrays = ArrayData(
        x_train=data["x_train"][..., None],
        y_train=data["y_train"].astype(np.int64),
        x_test=data["x_test"][..., None],
        y_test=data["y_test"].astype(np.int64),
        task="classification",
        input_shape=SHAPE,
        classes=list(range(10)),
        pixel_max=255.0,
    )
    results = {}
    for name in ("feedforward", "lenet"):
        layers = validate_layers(preset_layers(name, 10, SHAPE))
        training = Training.model_validate({"epochs": 2, "batch_size": 32}).model_dump()
        training.update(loss="sparse_categorical_crossentropy", metrics=["accuracy"], weight_decay=0.0)
        spec = {
            "dataset": "mnist",
            "framework": "pytorch",
            "task": "classification",
            "network": {"preset": None, "api": "module", "layers": layers},
            "input_shape": list(SHAPE),
            "outputs_probabilities": ends_with_softmax(layers),
            "parameters": parameter_counts(infer_shapes(layers, SHAPE)),
            "training": training,
            "evaluation": {"test_size": 0.2, "seed": 0},
            "device": "gpu",
            "device_requested": "gpu",
        }
        with tempfile.TemporaryDirectory() as directory:
            allotted = Allotment(checkpoint_dir=Path(directory))  # the whole GPU, a checkpoint every epoch
            first = _Reporter()
            one_epoch = NetworkRun.model_validate({**spec, "training": {**training, "epochs": 1}})
            train_torch(one_epoch, arrays, first, allotted)
            resumed = _Reporter()  # resumes from epoch 1's checkpoint on the GPU
            trained = train_torch(NetworkRun.model_validate(spec), arrays, resumed, allotted)
        results[name] = {
            "device": trained.extra["device"],
            "epochs_resumed": [e["epoch"] for e in resumed.epochs],
            "test_accuracy": trained.metrics["accuracy"],
            "epoch_seconds": [e["epoch_time"] for e in first.epochs + resumed.epochs],
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--mnist", type=Path, default=None, help="an mnist.npz for a real-data check")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    card = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    print(f"device: {card}, torch {torch.__version__}", flush=True)
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.samples, *SHAPE), dtype=torch.uint8, generator=generator)
    y = torch.randint(0, 10, (args.samples,), generator=generator)

    rows = []
    for name in ("feedforward", "lenet"):
        for batch in (32, 256):
            naive_epoch(name, x[:2048], y[:2048], batch, device)  # warm the libraries for both
            naive = naive_epoch(name, x, y, batch, device)
            first, second = labtrain_epochs(name, x, y, batch, device)
            rows.append(
                {
                    "network": name,
                    "batch": batch,
                    "naive_s": naive,
                    "labtrain_first_epoch_s": first,
                    "labtrain_second_epoch_s": second,
                    "speedup_first": naive / first,
                    "speedup_second": naive / second,
                }
            )
            print(
                f"{name:12s} batch {batch:4d}: naive {naive:6.2f} s | labtrain first epoch (capture included) "
                f"{first:6.2f} s ({naive / first:5.1f}x), second {second:6.2f} s ({naive / second:5.1f}x)",
                flush=True,
            )
    report = {"device": card, "torch": torch.__version__, "samples": args.samples, "rows": rows}
    if args.mnist:
        report["real_data_accuracy"] = real_data_check(args.mnist, device)
        print("real digits, 3 epochs, test accuracy:", report["real_data_accuracy"], flush=True)
        report["service_trainer"] = service_trainer_check(args.mnist)
        print("service trainer (1 epoch, then resumed to 2):", report["service_trainer"], flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
