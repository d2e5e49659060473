"""Keras and PyTorch trainers on real MNIST digits, with no services: presets on both
frameworks, parameter parity across all model APIs, events, checkpoints, cancellation."""

from __future__ import annotations

import numpy as np
import pytest

from service.data.arrays import ArrayData
from service.network import keras_builder, torch_builder
from service.network.layers import ends_with_softmax, infer_shapes, parameter_counts, validate_layers
from service.network.presets import preset_layers
from service.network.spec import NetworkRun, Training
from tests.support.digit_images import load_mnist_8k
from tests.support.trainers import ListReporter, stopping_after_asks, stopping_after_epochs
from workers.trainers import Allotment, Cancelled
from workers.trainers.network import train

SHAPE = (28, 28, 1)
CUSTOM = [
    {"type": "reshape", "shape": [28, 28, 1]},
    {"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": "same", "activation": "gelu"},
    {"type": "batchnorm"},
    {"type": "avgpool2d", "pool_size": 2},
    {"type": "conv2d", "filters": 6, "kernel_size": 3, "strides": 2, "activation": "tanh"},
    {"type": "maxpool2d", "pool_size": 2, "strides": 1},
    {"type": "flatten"},
    {"type": "dropout", "rate": 0.1},
    {"type": "dense", "units": 24, "activation": "sigmoid"},
    {"type": "batchnorm"},
    {"type": "activation", "activation": "relu"},
    {"type": "dense", "units": 10, "activation": "softmax"},
]


@pytest.fixture(scope="module")
def digits():
    x_train, y_train, x_test, y_test = load_mnist_8k()
    return ArrayData(
        x_train=x_train[:1000, ..., None],
        y_train=y_train[:1000].astype(np.int64),
        x_test=x_test[:200, ..., None],
        y_test=y_test[:200].astype(np.int64),
        task="classification",
        input_shape=SHAPE,
        classes=list(range(10)),
        pixel_max=255.0,
    )


def network_spec(framework, layers, api, epochs=2, *, input_shape=SHAPE, task="classification", **training):
    """The run a network job with these layers would store (what the trainer receives)."""
    defaults = (
        {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}
        if task == "classification"
        else {"loss": "mse", "metrics": ["mae"]}
    )
    return NetworkRun.model_validate(
        {
            "dataset": "mnist",
            "framework": framework,
            "task": task,
            "network": {"preset": None, "api": api, "layers": layers},
            "input_shape": list(input_shape),
            "outputs_probabilities": ends_with_softmax(layers),
            "parameters": parameter_counts(infer_shapes(layers, tuple(input_shape))),
            "training": Training.model_validate({"epochs": epochs, "batch_size": 32, **training}).model_dump()
            | {"weight_decay": 0.0, **defaults, **{k: v for k, v in training.items() if k in defaults}},
            "evaluation": {"test_size": 0.2, "seed": 0},
            "device": "cpu",
            "device_requested": "cpu",
        }
    )


@pytest.mark.parametrize("name", ["mlp", "feedforward", "lenet", "custom"])
def test_every_api_of_both_frameworks_has_the_same_parameters(name):
    layers = validate_layers(CUSTOM if name == "custom" else preset_layers(name, 10, SHAPE))
    flat = name == "custom"
    shape = (784,) if flat else SHAPE
    prepare = {"mean": [0.0] * 784, "std": [1.0] * 784} if flat else {"scale": 1 / 255}
    expected = parameter_counts(infer_shapes(layers, shape))
    counts = {
        f"keras/{api}": keras_builder.count_parameters(keras_builder.build_keras(layers, shape, api, prepare))
        for api in ("sequential", "functional", "subclassing")
    }
    counts |= {
        f"torch/{api}": torch_builder.count_parameters(torch_builder.build_torch(layers, shape, api, prepare))
        for api in ("sequential", "module")
    }
    assert all(count == expected for count in counts.values()), (expected, counts)
    if name == "mlp":
        assert expected["trainable"] == 101_770  # the Keras quickstart's figure
    if name == "lenet":
        assert expected["trainable"] == 61_706


@pytest.mark.parametrize(
    "framework,api",
    [
        ("tensorflow", "sequential"),
        ("tensorflow", "functional"),
        ("tensorflow", "subclassing"),
        ("pytorch", "sequential"),
        ("pytorch", "module"),
    ],
)
@pytest.mark.parametrize("preset", ["mlp", "feedforward", "lenet"])
def test_presets_train_report_every_epoch_and_predict(digits, tmp_path, framework, api, preset):
    layers = validate_layers(preset_layers(preset, 10, SHAPE))
    reporter, allotted = ListReporter(), Allotment(checkpoint_dir=tmp_path / "checkpoints")
    trained = train(network_spec(framework, layers, api, validation_split=0.1), digits, reporter, allotted)

    epochs = [data for kind, data in reporter.events if kind == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "epoch_time"} <= set(epochs[-1])
    assert reporter.progress_calls[-1]["fraction"] == 1.0 and reporter.progress_calls[-1]["epochs"] == 2
    assert [p.name for p in allotted.checkpoint_dir.iterdir()] == [
        f"epoch-0002{'.keras' if framework == 'tensorflow' else '.pt'}"
    ]
    metrics = trained.metrics
    assert metrics["epochs_run"] == 2 and 0.3 < metrics["accuracy"] <= 1.0
    assert len(metrics["confusion_matrix"]["matrix"]) == 10
    assert trained.extra["parameters"]["trainable"] == parameter_counts(infer_shapes(layers, SHAPE))["trainable"]
    assert trained.input == {"shape": [28, 28, 1], "kind": "image", "pixel_max": 255.0}
    assert "Trainable params" in trained.summary or "Total params" in trained.summary


class LastEpochOnly(Allotment):
    """Says a checkpoint is due only at the last epoch (as the clock does for short epochs)."""

    def __init__(self, checkpoint_dir):
        super().__init__(checkpoint_dir=checkpoint_dir)
        self.asked = []

    def checkpoint_due(self, last):
        self.asked.append(last)
        return last


@pytest.mark.parametrize("framework,preset", [("pytorch", "feedforward"), ("tensorflow", "mlp")])
def test_a_checkpoint_is_written_only_when_the_reporter_says_it_is_due(digits, tmp_path, framework, preset):
    layers = validate_layers(preset_layers(preset, 10, SHAPE))
    allotted = LastEpochOnly(tmp_path)
    train(network_spec(framework, layers, "sequential", epochs=3), digits, ListReporter(), allotted)
    assert allotted.asked == [False, False, True]
    suffix = ".pt" if framework == "pytorch" else ".keras"
    assert [p.name for p in tmp_path.iterdir()] == [f"epoch-0003{suffix}"]


@pytest.mark.parametrize(
    "framework,preset,api", [("pytorch", "feedforward", "sequential"), ("tensorflow", "mlp", "subclassing")]
)
def test_a_job_resumes_from_its_last_checkpoint(digits, tmp_path, framework, preset, api):
    layers = validate_layers(preset_layers(preset, 10, SHAPE))
    train(network_spec(framework, layers, api, epochs=1), digits, ListReporter(), Allotment(checkpoint_dir=tmp_path))
    resumed = ListReporter()
    trained = train(network_spec(framework, layers, api, epochs=3), digits, resumed, Allotment(checkpoint_dir=tmp_path))
    assert [d["epoch"] for k, d in resumed.events if k == "epoch"] == [2, 3]
    assert any("resuming from the checkpoint of epoch 1" in d.get("message", "") for k, d in resumed.events)
    assert trained.metrics["epochs_run"] == 3


@pytest.mark.parametrize("framework", ["tensorflow", "pytorch"])
def test_a_cancel_stops_within_one_batch(digits, framework):
    reporter, allotted = ListReporter(), stopping_after_asks(5)
    layers = validate_layers(preset_layers("mlp", 10, SHAPE))
    with pytest.raises(Cancelled):
        train(network_spec(framework, layers, "sequential", epochs=3), digits, reporter, allotted)
    assert allotted.asked <= 7  # it stopped right after the asking that said stop
    assert not [d for k, d in reporter.events if k == "epoch"]


@pytest.mark.parametrize("framework", ["tensorflow", "pytorch"])
def test_early_stopping_ends_training_before_the_last_epoch(digits, framework):
    layers = validate_layers(preset_layers("mlp", 10, SHAPE))
    spec = network_spec(
        framework,
        layers,
        "sequential",
        epochs=30,
        learning_rate=0.05,
        validation_split=0.2,
        early_stopping={"monitor": "val_loss", "patience": 1, "min_delta": 0.0, "restore_best_weights": True},
    )
    trained = train(spec, digits, ListReporter(), Allotment())
    assert trained.metrics["epochs_run"] < 30


def linear_table(seed, scales, weights, bias):
    """300 rows of three features and a target linear in them, split 240/60; and a small network for it."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 3)).astype(np.float32) * scales
    y = (x @ np.array(weights) + bias).astype(np.float32)
    data = ArrayData(
        x_train=x[:240],
        y_train=y[:240],
        x_test=x[240:],
        y_test=y[240:],
        task="regression",
        input_shape=(3,),
        classes=None,
        features=["a", "b", "c"],
    )
    layers = validate_layers([{"type": "dense", "units": 16, "activation": "relu"}, {"type": "dense", "units": 1}])
    return data, layers


def test_regression_on_a_table_with_pytorch_and_keras():
    data, layers = linear_table(0, scales=[1, 10, 100], weights=[1.0, 0.2, 0.03], bias=5)
    for framework in ("tensorflow", "pytorch"):
        spec = network_spec(
            framework,
            layers,
            "sequential",
            epochs=40,
            learning_rate=0.01,
            input_shape=(3,),
            task="regression",
            loss="mse",
            metrics=["mae"],
        )
        trained = train(spec, data, ListReporter(), Allotment())
        assert trained.metrics["r2"] > 0.9, (framework, trained.metrics)
        assert trained.input["features"] == ["a", "b", "c"]


@pytest.mark.parametrize(
    "framework,loss",
    [("pytorch", "huber"), ("tensorflow", "smooth_l1_loss"), ("pytorch", "l1_loss"), ("tensorflow", "mse_loss")],
)
def test_regression_losses_under_either_frameworks_names_train(framework, loss):
    data, layers = linear_table(1, scales=[1, 1, 1], weights=[1.0, -2.0, 0.5], bias=3)
    spec = network_spec(
        framework,
        layers,
        "sequential",
        epochs=40,
        learning_rate=0.01,
        input_shape=(3,),
        task="regression",
        loss=loss,
        metrics=["mae"],
    )
    trained = train(spec, data, ListReporter(), Allotment())
    assert trained.metrics["r2"] > 0.9, (framework, loss, trained.metrics)


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow"])
def test_pytorchs_cross_entropy_trains_like_keras_sparse_crossentropy(digits, framework):
    layers = validate_layers(preset_layers("feedforward", 10, SHAPE))
    keras_named = train(
        network_spec(framework, layers, "sequential", epochs=1, seed=4), digits, ListReporter(), Allotment()
    )
    torch_named = train(
        network_spec(framework, layers, "sequential", epochs=1, seed=4, loss="cross_entropy"),
        digits,
        ListReporter(),
        Allotment(),
    )
    assert torch_named.metrics["accuracy"] == keras_named.metrics["accuracy"]  # the same loss, so the same fit


@pytest.mark.parametrize(
    "framework,preset,api", [("pytorch", "feedforward", "sequential"), ("tensorflow", "mlp", "subclassing")]
)
def test_an_unreadable_newest_checkpoint_is_skipped_for_the_one_before(digits, tmp_path, framework, preset, api):
    layers = validate_layers(preset_layers(preset, 10, SHAPE))
    first = ListReporter()
    # Stopped after two epochs, as a worker killed during the third would leave it.
    first_spec = network_spec(framework, layers, api, epochs=5)
    with pytest.raises(Cancelled):
        train(first_spec, digits, first, stopping_after_epochs(first, 2, checkpoint_dir=tmp_path))
    suffix = ".keras" if framework == "tensorflow" else ".pt"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"epoch-0001{suffix}", f"epoch-0002{suffix}"]
    newest = tmp_path / f"epoch-0002{suffix}"
    newest.write_bytes(newest.read_bytes()[:100])  # half-written

    resumed = ListReporter()
    trained = train(network_spec(framework, layers, api, epochs=3), digits, resumed, Allotment(checkpoint_dir=tmp_path))
    messages = [d["message"] for k, d in resumed.events if k == "log"]
    assert any("checkpoint of epoch 2 could not be read" in m for m in messages), messages
    assert any("resuming from the checkpoint of epoch 1" in m for m in messages), messages
    assert [d["epoch"] for k, d in resumed.events if k == "epoch"] == [2, 3]
    assert trained.metrics["epochs_run"] == 3


def test_when_no_checkpoint_can_be_read_the_job_starts_over(digits, tmp_path):
    (tmp_path / "epoch-0004.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "epoch-0003.pt").write_bytes(b"")
    reporter = ListReporter()
    layers = validate_layers(preset_layers("feedforward", 10, SHAPE))
    spec = network_spec("pytorch", layers, "sequential", epochs=2)
    trained = train(spec, digits, reporter, Allotment(checkpoint_dir=tmp_path))
    messages = [d["message"] for k, d in reporter.events if k == "log"]
    assert sum("could not be read" in m for m in messages) == 2
    assert any("starting over from epoch 1" in m for m in messages)
    assert [d["epoch"] for k, d in reporter.events if k == "epoch"] == [1, 2]
    assert trained.metrics["epochs_run"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["epoch-0002.pt"]
