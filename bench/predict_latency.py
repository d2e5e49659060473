"""Predict latency of an MNIST ONNX model through the API: the model answering from a process of
its own (service/serving, as deployed) against the same route with the model loaded in the API's
own process (how predict worked before models were moved out), measured in the same run.

Both go through the Flask app in process (routing, the token, the JSON body, the model row), so
the difference is the model's process: a pipe's round trip and its framing. The goal: p50 at
most 2x the in-process figure, for JSON instances and for an uploaded picture.

    .venv/bin/python bench/predict_latency.py [--requests 300]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.api import create_app
from service.core.config import Settings
from service.core.db import Database
from service.core.migrate import upgrade
from service.core.orm import Job, Model
from service.lab.users import create_user


def mnist_mlp(path: Path) -> None:
    """784-128-10 with softmax, random weights: the course's MNIST network's shape and cost."""
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.normal(0, 0.05, (784, 128)).astype(np.float32), "W1"),
        numpy_helper.from_array(np.zeros(128, np.float32), "b1"),
        numpy_helper.from_array(rng.normal(0, 0.05, (128, 10)).astype(np.float32), "W2"),
        numpy_helper.from_array(np.zeros(10, np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("Flatten", ["x"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["r"]),
        helper.make_node("MatMul", ["r", "W2"], ["o"]),
        helper.make_node("Add", ["o", "b2"], ["ob"]),
        helper.make_node("Softmax", ["ob"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mnist",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])],
        weights,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


class InProcessModels:
    """The model loaded in the API's own process, as predict did before (the baseline)."""

    def __init__(self):
        self.loaded = {}

    def predict(self, model, predictor, instances, images):
        if model.id not in self.loaded:
            self.loaded[model.id] = predictor.load(model)
        return predictor.predict(self.loaded[model.id], model, instances, images)

    def close(self):
        pass


def setup(home: Path) -> tuple[Settings, str, str]:
    settings = Settings.from_env_map({**os.environ, "LABTRAIN_HOME": str(home)})
    settings.ensure_dirs()
    upgrade(settings.database_url)
    path = settings.artifact_dir / "models" / "mnist.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    mnist_mlp(path)
    with Database(settings.database_url).session() as session:
        user, token = create_user(session, "bench")
        job = Job(owner_id=user.id, family="code", spec={}, status="succeeded")
        session.add(job)
        session.flush()
        model = Model(
            job_id=job.id,
            owner_id=user.id,
            framework="onnx",
            task="classification",
            input={"shape": [1, 28, 28], "dtype": "float32"},
            classes=list(range(10)),
            class_names=None,
            meta={"format": "onnx", "outputs_probabilities": True, "preprocess": None},
            artifact_path=str(path),
        )
        session.add(model)
        session.flush()
        return settings, token, model.id


def timed(call, requests: int) -> list[float]:
    call()  # the first loads the model
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        settings, token, model_id = setup(Path(folder))
        headers = {"Authorization": f"Bearer {token}"}
        digit = np.zeros((28, 28), np.uint8)
        digit[6:22, 12:16] = 255
        picture = io.BytesIO()
        Image.fromarray(digit).save(picture, "PNG")
        instances = {"instances": [(digit / 255.0).reshape(1, 28, 28).tolist()]}
        route = f"/api/v1/models/{model_id}/predict"
        apps = {}
        for name in ("in the API's process", "in a model's process"):
            app = create_app(settings)
            if name.startswith("in the API"):
                app.extensions["labtrain"].models = InProcessModels()
            apps[name] = app
        results = {}
        for name, app in apps.items():
            client = app.test_client()

            def json_call(client=client):
                answer = client.post(route, headers=headers, json=instances)
                assert answer.status_code == 200, answer.get_data(as_text=True)

            def picture_call(client=client):
                data = {"file": (io.BytesIO(picture.getvalue()), "digit.png")}
                answer = client.post(route, headers=headers, data=data, content_type="multipart/form-data")
                assert answer.status_code == 200, answer.get_data(as_text=True)

            results[name] = {"json": timed(json_call, args.requests), "picture": timed(picture_call, args.requests)}
            app.extensions["labtrain"].models.close()
        base, served = results["in the API's process"], results["in a model's process"]
        print(f"MNIST ONNX predict, {args.requests} requests each, p50 (p90) in ms")
        for kind in ("json", "picture"):
            for name, figures in results.items():
                values = figures[kind]
                p90 = sorted(values)[int(0.9 * len(values))]
                print(f"  {kind:8s} {name:22s} {statistics.median(values):7.2f} ({p90:.2f})")
            ratio = statistics.median(served[kind]) / statistics.median(base[kind])
            print(f"  {kind:8s} ratio {ratio:.2f} (goal: at most 2.00) {'met' if ratio <= 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
