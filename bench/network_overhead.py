"""What the service adds to training a network, against the plain script, in one run.

Keras: the TensorFlow 2 quickstart (`mlp`), 5 epochs at batch 32 on the MNIST subset.
PyTorch: the course's 784-512-10 network (`feedforward`), a plain DataLoader loop, same.
Service: submit to succeeded on a warm worker (PostgreSQL + Redis), same data and seed.

    .venv/bin/python bench/network_overhead.py [--repeats 3] [--mnist service/data/files/mnist-8k.npz]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.service_process import start_service
from tests.support.digit_images import MNIST_8K

KERAS_SCRIPT = """
import sys, time
import numpy as np
import keras
keras.utils.set_random_seed(0)
data = np.load(sys.argv[1])
x_train, y_train, x_test, y_test = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
start = time.perf_counter()
x_train, x_test = x_train / 255.0, x_test / 255.0
model = keras.models.Sequential([keras.layers.Input(shape=(28, 28)), keras.layers.Flatten(),
    keras.layers.Dense(128, activation="relu"), keras.layers.Dropout(0.2), keras.layers.Dense(10)])
model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
model.fit(x_train, y_train, epochs=5, batch_size=32, verbose=0)
accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
print(time.perf_counter() - start, accuracy)
"""

TORCH_SCRIPT = """
import sys, time
import numpy as np
import torch
from torch import nn
torch.manual_seed(0)
data = np.load(sys.argv[1])
start = time.perf_counter()
x_train = torch.tensor(data["x_train"], dtype=torch.float32) / 255.0
y_train = torch.tensor(data["y_train"], dtype=torch.long)
x_test = torch.tensor(data["x_test"], dtype=torch.float32) / 255.0
y_test = torch.tensor(data["y_test"], dtype=torch.long)
model = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x_train, y_train), batch_size=32, shuffle=True)
for epoch in range(5):
    model.train()
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        optimizer.step()
model.eval()
with torch.no_grad():
    accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
print(time.perf_counter() - start, accuracy)
"""

SPECS = {
    "keras mlp": {
        "dataset": "mnist",
        "framework": "tensorflow",
        "network": {"preset": "mlp"},
        "training": {"epochs": 5, "batch_size": 32, "seed": 0},
    },
    "pytorch feedforward": {
        "dataset": "mnist",
        "framework": "pytorch",
        "network": {"preset": "feedforward"},
        "training": {"epochs": 5, "batch_size": 32, "seed": 0},
    },
}
SCRIPTS = {"keras mlp": KERAS_SCRIPT, "pytorch feedforward": TORCH_SCRIPT}


def plain_run(script: str, mnist: Path) -> tuple[float, float, float]:
    """(whole script seconds, fit and evaluate seconds, accuracy) of a fresh python process."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", script, str(mnist)], capture_output=True, text=True, check=True)
    total = time.perf_counter() - start
    fit, accuracy = map(float, out.stdout.split()[-2:])
    return total, fit, accuracy


def service_run(client, spec: dict) -> tuple[float, float, float]:
    """(submit-to-succeeded seconds, sum of epoch times, accuracy)."""
    start = time.perf_counter()
    job = client.follow(client.post("/api/v1/jobs", json=spec).json()["id"])
    elapsed = time.perf_counter() - start
    assert job["status"] == "succeeded", job
    events = client.get(f"/api/v1/jobs/{job['id']}/events").json()["items"]
    fit = sum(e["data"]["epoch_time"] for e in events if e["type"] == "epoch")
    return elapsed, fit, job["metrics"]["accuracy"]


def warm_up(client) -> None:
    """One short job of each framework in each of the worker's two pool processes (run at once)."""
    ids = [
        client.post("/api/v1/jobs", json={**spec, "training": {**spec["training"], "epochs": 1}}).json()["id"]
        for spec in SPECS.values()
        for _ in range(2)
    ]
    for job_id in ids:
        client.wait_for(job_id, timeout=600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mnist", type=Path, default=MNIST_8K)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as home:
        data_dir = Path(home) / "datasets"
        data_dir.mkdir()
        (data_dir / "mnist.npz").symlink_to(args.mnist.resolve())
        client, processes, cleanup = start_service("postgres+redis", Path(home), LABTRAIN_DATA_DIR=str(data_dir))
        try:
            warm_up(client)
            rows = []
            for name, spec in SPECS.items():
                plain, service = [], []
                for _ in range(args.repeats):  # alternate, so drift on a shared machine hits both
                    plain.append(plain_run(SCRIPTS[name], args.mnist))
                    service.append(service_run(client, spec))
                    print(
                        f"{name}: plain {plain[-1][0]:.2f} s (fit {plain[-1][1]:.2f} s, acc {plain[-1][2]:.4f}) | "
                        f"service {service[-1][0]:.2f} s (epochs {service[-1][1]:.2f} s, acc {service[-1][2]:.4f})",
                        flush=True,
                    )
                rows.append(
                    (
                        name,
                        *(statistics.median(v[i] for v in plain) for i in range(3)),
                        *(statistics.median(v[i] for v in service) for i in range(3)),
                    )
                )
        finally:
            for process in processes:
                process.stop()
            if cleanup:
                cleanup()

    print(
        "\n| job | plain script (with imports) | plain fit + evaluate | service, submit to succeeded | "
        "service / plain fit | service / plain script | accuracy plain / service |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, p_total, p_fit, p_acc, s_total, _s_fit, s_acc in rows:
        print(
            f"| {name} | {p_total:.2f} s | {p_fit:.2f} s | {s_total:.2f} s | {s_total / p_fit:.3f} | "
            f"{s_total / p_total:.3f} | {p_acc:.4f} / {s_acc:.4f} |"
        )


if __name__ == "__main__":
    main()
