"""Network jobs through the API on PostgreSQL: specs checked at submit, training on the
MNIST subset with both frameworks, epoch events, and prediction from arrays and images."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tests.service.api.test_api_datasets_models import submit_and_run, upload
from tests.support.api import assert_error
from tests.support.digit_images import load_mnist_8k, render
from tests.support.workers import heartbeat

MLP = {
    "dataset": "mnist",
    "framework": "tensorflow",
    "network": {"preset": "mlp"},
    "training": {"epochs": 3, "batch_size": 32, "seed": 0},
}


@pytest.fixture(scope="module")
def mnist():
    return load_mnist_8k()


def predict_images(client, headers, model_id, images: list[bytes], fmt: str) -> list[int]:
    predictions = []
    for start in range(0, len(images), 20):  # within the upload limit these tests set
        files = [(io.BytesIO(data), f"digit{i}.{fmt.lower()}") for i, data in enumerate(images[start : start + 20])]
        response = client.post(
            f"/api/v1/models/{model_id}/predict",
            headers=headers,
            data={"file": files},
            content_type="multipart/form-data",
        )
        assert response.status_code == 200, response.get_json()
        predictions += response.get_json()["predictions"]
    return predictions


def test_keras_mlp_trains_reports_epochs_and_reads_drawn_digits(client, alice, run_queued, mnist):
    job = submit_and_run(client, alice, run_queued, MLP)
    assert job["status"] == "succeeded", job["error"]
    assert job["queue"] == "cpu" and job["result"]["device"] == "cpu"
    assert job["progress"] == {"fraction": 1.0, "epoch": 3, "epochs": 3}
    assert job["spec"]["parameters"]["trainable"] == 101_770 and job["spec"]["network"]["api"] == "sequential"
    events = client.get(f"/api/v1/jobs/{job['id']}/events", headers=alice).get_json()["items"]
    epochs = [e["data"] for e in events if e["type"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert all({"loss", "accuracy", "epoch_time"} <= set(e) for e in epochs)
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    assert job["metrics"]["accuracy"] > 0.9 and "test_loss" in job["metrics"]

    model_id = job["result"]["model_id"]
    model = client.get(f"/api/v1/models/{model_id}", headers=alice).get_json()
    assert model["framework"] == "tensorflow" and model["input"]["shape"] == [28, 28, 1]
    assert model["parameters"]["trainable"] == 101_770 and "Total params" in model["summary"]
    assert client.get(f"/api/v1/models/{model_id}/download", headers=alice).data[:2] == b"PK"

    _, _, x_test, y_test = mnist
    x, y = x_test[:200], y_test[:200]
    raw = client.post(
        f"/api/v1/models/{model_id}/predict", headers=alice, json={"instances": x.tolist()}
    ).get_json()  # raw pixels: scaling is in the model
    raw_accuracy = np.mean(np.array(raw["predictions"]) == y)
    assert raw_accuracy > 0.88
    assert np.allclose(np.sum(raw["probabilities"], axis=1), 1, atol=1e-4)
    for fmt, dark_on_light in (("BMP", True), ("PNG", True), ("JPEG", False)):
        images = [render(digit, size=280, fmt=fmt, dark_on_light=dark_on_light) for digit in x]
        accuracy = np.mean(np.array(predict_images(client, alice, model_id, images, fmt)) == y)
        assert accuracy >= raw_accuracy - 0.02, (fmt, accuracy, raw_accuracy)


@pytest.mark.parametrize("preset,api", [("feedforward", "module"), ("lenet", "sequential")])
def test_pytorch_presets_train_and_predict(client, alice, run_queued, mnist, preset, api):
    spec = {
        "dataset": "mnist",
        "framework": "pytorch",
        "network": {"preset": preset, "api": api},
        "training": {"epochs": 1, "batch_size": 64},
    }
    job = submit_and_run(client, alice, run_queued, spec)
    assert job["status"] == "succeeded", job["error"]
    assert job["metrics"]["accuracy"] > 0.8
    model_id = job["result"]["model_id"]
    _, _, x_test, y_test = mnist
    images = [render(d, size=120, fmt="PNG") for d in x_test[:20]]
    predictions = predict_images(client, alice, model_id, images, "PNG")
    assert np.mean(np.array(predictions) == y_test[:20]) >= 0.7
    answer = client.post(
        f"/api/v1/models/{model_id}/predict", headers=alice, json={"instances": [x_test[0][..., None].tolist()]}
    ).get_json()
    assert answer["predictions"] == [int(y_test[0])] or len(answer["probabilities"][0]) == 10


@pytest.mark.parametrize(
    "change,field",
    [
        ({"network": {"layers": [{"type": "flatten"}, {"type": "lstm", "units": 3}]}}, "network.layers.1.type"),
        ({"network": {"layers": [{"type": "flatten"}, {"type": "dense"}]}}, "network.layers.1.units"),
        ({"network": {"layers": [{"type": "flatten"}, {"type": "dense", "units": 0}]}}, "network.layers.1.units"),
        (
            {
                "network": {
                    "layers": [
                        {"type": "flatten"},
                        {"type": "conv2d", "filters": 4, "kernel_size": 3},
                        {"type": "dense", "units": 10},
                    ]
                }
            },
            "network.layers.1",
        ),
        ({"network": {"layers": [{"type": "dense", "units": 10}]}}, "network.layers.0"),
        ({"network": {"layers": [{"type": "flatten"}, {"type": "dense", "units": 7}]}}, "network.layers.1"),
        ({"network": {"layers": [{"type": "conv2d", "filters": 2, "kernel_size": 40}]}}, "network.layers.0"),
        ({"network": {"layers": [{"type": "reshape", "shape": [5, 5]}]}}, "network.layers.0"),
        ({"network": {"layers": [{"type": "flatten", "units": 3}]}}, "network.layers.0.units"),
        ({"network": {"layers": []}}, "network.layers"),
        ({"network": {"layers": "dense"}}, "network.layers"),
        ({"network": {"layers": ["dense"]}}, "network.layers.0"),
        ({"network": {}}, "network.layers"),
        ({"network": {"preset": "mlp", "layers": [{"type": "flatten"}]}}, "network.preset"),
        ({"network": {"preset": "resnet"}}, "network.preset"),
        ({"network": {"preset": "mlp", "api": "functional"}, "framework": "pytorch"}, "network.api"),
        ({"network": {"preset": "mlp", "api": "module"}}, "network.api"),
        ({"framework": "jax"}, "framework"),
        ({"training": {"epochs": 0}}, "training.epochs"),
        ({"training": {"batch_size": "32"}}, "training.batch_size"),
        ({"training": {"optimizer": "lbfgs"}}, "training.optimizer"),
        ({"training": {"learning_rate": -1}}, "training.learning_rate"),
        ({"training": {"loss": "mse"}}, "training.loss"),
        ({"training": {"metrics": ["auc"]}}, "training.metrics.0"),
        ({"training": {"early_stopping": {"monitor": "val_loss"}}}, "training.early_stopping.monitor"),
        (
            {"training": {"early_stopping": {"patience": -1}, "validation_split": 0.1}},
            "training.early_stopping.patience",
        ),
        ({"training": {"validation_split": 1.5}}, "training.validation_split"),
        ({"device": "tpu"}, "device"),
        ({"dataset": "imagenet"}, "dataset"),
        (
            {"dataset": "digits", "network": {"layers": [{"type": "conv2d", "filters": 2, "kernel_size": 9}]}},
            "network.layers.0",
        ),
    ],
)
def test_invalid_network_specs_are_422_naming_the_field(client, alice, change, field):
    spec = {**MLP, **change}
    assert_error(client.post("/api/v1/jobs", json=spec, headers=alice), 422, field)
    assert client.get("/api/v1/jobs", headers=alice).get_json()["items"] == []


def test_mnist_that_is_not_installed_is_a_clear_422(client, alice, settings):
    (settings.data_dir / "mnist.npz").unlink()
    error = assert_error(client.post("/api/v1/jobs", json=MLP, headers=alice), 422, "dataset")
    assert "mnist.npz" in error["message"] and "labtrain datasets fetch mnist" in error["message"]
    listed = {d["id"]: d for d in client.get("/api/v1/datasets", headers=alice).get_json()["items"]}
    assert listed["digits"]["installed"] and not listed["mnist"]["installed"]
    assert "labtrain datasets fetch mnist" in listed["mnist"]["how"]


def test_network_on_digits_and_on_an_uploaded_npz(client, alice, bob, run_queued):
    job = submit_and_run(
        client,
        alice,
        run_queued,
        {"dataset": "digits", "framework": "pytorch", "network": {"preset": "lenet"}, "training": {"epochs": 3}},
    )
    assert job["status"] == "succeeded", job["error"]
    assert job["spec"]["input_shape"] == [8, 8, 1]

    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + 3  # labels 3 and 4
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=y)
    dataset = upload(client, alice, buffer.getvalue(), "table.npz").get_json()
    assert dataset["kind"] == "npz" and dataset["shape"] == [6] and dataset["classes"] == [3, 4]
    spec = {
        "dataset": {"id": dataset["id"]},
        "framework": "tensorflow",
        "network": {
            "api": "functional",
            "layers": [
                {"type": "dense", "units": 8, "activation": "relu"},
                {"type": "dense", "units": 2, "activation": "softmax"},
            ],
        },
        "training": {"epochs": 20, "batch_size": 16, "learning_rate": 0.01},
    }
    assert_error(client.post("/api/v1/jobs", json=spec, headers=bob), 404, "dataset.id", "not_found")
    job = submit_and_run(client, alice, run_queued, spec)
    assert job["status"] == "succeeded", job["error"]
    answer = client.post(
        f"/api/v1/models/{job['result']['model_id']}/predict",
        headers=alice,
        json={"instances": [[3, 3, 0, 0, 0, 0], [-3, -3, 0, 0, 0, 0]]},
    ).get_json()
    assert answer["predictions"] == [4, 3]
    assert_error(
        client.post(
            f"/api/v1/models/{job['result']['model_id']}/predict", headers=alice, json={"instances": [[1, 2, 3]]}
        ),
        422,
        "instances.0",
    )
    assert_error(
        client.post(
            f"/api/v1/models/{job['result']['model_id']}/predict",
            headers=alice,
            data={"file": (io.BytesIO(render(np.eye(28, dtype=np.uint8) * 255)), "a.png")},
            content_type="multipart/form-data",
        ),
        422,
        "file",
    )


def test_network_on_an_uploaded_csv(client, alice, run_queued):
    rows = "\n".join(f"{a},{b},{2 * a - b + 1}" for a, b in np.random.default_rng(2).integers(0, 50, (150, 2)))
    dataset = upload(client, alice, ("a,b,out\n" + rows).encode(), target="out").get_json()
    job = submit_and_run(
        client,
        alice,
        run_queued,
        {
            "dataset": {"id": dataset["id"]},
            "framework": "pytorch",
            "network": {"layers": [{"type": "dense", "units": 1}]},
            "training": {"epochs": 60, "batch_size": 16, "learning_rate": 0.5},
        },
    )
    assert job["status"] == "succeeded", job["error"]
    assert job["spec"]["task"] == "regression" and job["metrics"]["r2"] > 0.95
    text = upload(client, alice, b"colour,out\nred,1\nblue,2\nred,1\n", target="out").get_json()
    assert_error(
        client.post(
            "/api/v1/jobs",
            headers=alice,
            json={
                "dataset": {"id": text["id"]},
                "framework": "pytorch",
                "network": {"layers": [{"type": "dense", "units": 1}]},
            },
        ),
        422,
        "dataset",
    )


@pytest.mark.parametrize(
    "data,field",
    [
        (b"PK\x03\x04broken", "file"),
        (b"", "file"),
    ],
)
def test_bad_npz_uploads_are_422(client, alice, data, field):
    assert_error(upload(client, alice, data, "bad.npz"), 422, field)


@pytest.mark.parametrize(
    "arrays",
    [
        {"x": np.array([{"a": 1}, {"b": 2}], dtype=object), "y": np.array([1, 2])},  # would need unpickling
        {"images": np.zeros((4, 2)), "labels": np.zeros(4)},
        {"x": np.zeros((4, 2)), "y": np.zeros(3)},
        {"x": np.zeros((4, 2, 2, 2, 2)), "y": np.zeros(4)},
        {"x": np.full((4, 2), np.nan), "y": np.zeros(4)},
        {"x": np.array([["a", "b"], ["c", "d"]]), "y": np.zeros(2)},
    ],
)
def test_npz_with_unusable_arrays_is_422(client, alice, arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    error = assert_error(upload(client, alice, buffer.getvalue(), "data.npz"), 422, "file", "invalid_dataset")
    assert error["message"]


def test_images_need_an_image_model_and_real_images(client, alice, run_queued):
    classic = submit_and_run(client, alice, run_queued, {"dataset": "iris", "algorithm": "knn"})
    image = render(load_mnist_8k()[2][0], fmt="PNG")
    assert_error(
        client.post(
            f"/api/v1/models/{classic['result']['model_id']}/predict",
            headers=alice,
            data={"file": (io.BytesIO(image), "d.png")},
            content_type="multipart/form-data",
        ),
        422,
        "file",
    )
    job = submit_and_run(
        client,
        alice,
        run_queued,
        {**MLP, "framework": "pytorch", "network": {"preset": "feedforward"}, "training": {"epochs": 1}},
    )
    model_id = job["result"]["model_id"]
    for payload, name in ((b"not an image", "notes.txt"), (b"\x89PNG\r\n\x1a\n", "cut.png")):
        assert_error(
            client.post(
                f"/api/v1/models/{model_id}/predict",
                headers=alice,
                data={"file": (io.BytesIO(payload), name)},
                content_type="multipart/form-data",
            ),
            422,
            "file.0",
            "invalid_image",
        )
    assert_error(
        client.post(
            f"/api/v1/models/{model_id}/predict", headers=alice, data={"other": "x"}, content_type="multipart/form-data"
        ),
        422,
        "file",
    )
    assert_error(
        client.post(f"/api/v1/models/{model_id}/predict", headers=alice, json={"instances": [[[1, 2], [3, 4]]]}),
        422,
        "instances.0",
    )


def test_auto_device_goes_to_the_gpu_queue_only_while_a_gpu_worker_is_online(client, alice, db):
    spec = {**MLP, "framework": "pytorch", "network": {"preset": "feedforward"}}
    assert client.post("/api/v1/jobs", json=spec, headers=alice).get_json()["queue"] == "cpu"
    assert client.post("/api/v1/jobs", json={**spec, "device": "gpu"}, headers=alice).get_json()["queue"] == "gpu"
    heartbeat(db, "gpu0@lab", gpu_name="NVIDIA H100", gpu_memory_mb=81559)
    assert client.post("/api/v1/jobs", json=spec, headers=alice).get_json()["queue"] == "gpu"
    assert client.post("/api/v1/jobs", json={**spec, "device": "cpu"}, headers=alice).get_json()["queue"] == "cpu"
    queue = client.get("/api/v1/queue", headers=alice).get_json()["queues"]
    assert queue["gpu"]["workers"][0]["gpu"] == {"name": "NVIDIA H100", "memory_mb": 81559}
    assert queue["gpu"]["queued"] == 2 and queue["cpu"]["queued"] == 2


def test_catalog_lists_presets_layers_and_training_options(client, alice):
    networks = client.get("/api/v1/algorithms", headers=alice).get_json()["networks"]
    assert [p["name"] for p in networks["presets"]] == ["mlp", "feedforward", "lenet"]
    assert {layer["type"] for layer in networks["layers"]} == {
        "flatten",
        "dense",
        "dropout",
        "conv2d",
        "maxpool2d",
        "avgpool2d",
        "batchnorm",
        "activation",
        "reshape",
    }
    assert networks["frameworks"] == {
        "tensorflow": ["sequential", "functional", "subclassing"],
        "pytorch": ["sequential", "module"],
    }
    epochs = next(p for p in networks["training"] if p["name"] == "epochs")
    assert epochs["default"] == 5 and epochs["accepts"][0]["minimum"] == 1
