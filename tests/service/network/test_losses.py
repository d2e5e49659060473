"""Network jobs take each framework's own names for losses and optimizers: a PyTorch student
writes `cross_entropy` and `Adam`, a Keras student `sparse_categorical_crossentropy`, and
both work on either framework; the catalog lists every name."""

from __future__ import annotations

import pytest

from service.network import losses
from tests.support.api import assert_error

pytestmark = pytest.mark.fast

DIGITS = {"dataset": "digits", "network": {"preset": "feedforward"}, "training": {"epochs": 1}}
DIABETES = {
    "dataset": "diabetes",
    "network": {"layers": [{"type": "dense", "units": 8, "activation": "relu"}, {"type": "dense", "units": 1}]},
    "training": {"epochs": 1},
}


def submit(client, headers, base, framework, **training):
    spec = {**base, "framework": framework, "training": {**base["training"], **training}}
    return client.post("/api/v1/jobs", json=spec, headers=headers)


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow"])
@pytest.mark.parametrize(
    "loss", ["sparse_categorical_crossentropy", "cross_entropy", "CrossEntropyLoss", "nll_loss", "NLLLoss"]
)
def test_classification_losses_under_either_frameworks_names(client, alice, framework, loss):
    created = submit(client, alice, DIGITS, framework, loss=loss)
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["spec"]["training"]["loss"] == loss  # the student's own word is kept


@pytest.mark.parametrize(
    "loss",
    [
        "mse",
        "mean_squared_error",
        "mse_loss",
        "MSELoss",
        "mae",
        "l1_loss",
        "L1Loss",
        "huber",
        "smooth_l1_loss",
        "huber_loss",
    ],
)
def test_regression_losses_under_either_frameworks_names(client, alice, loss):
    assert submit(client, alice, DIABETES, "pytorch", loss=loss).status_code == 201


@pytest.mark.parametrize(
    "base,loss", [(DIGITS, "mse_loss"), (DIGITS, "l1_loss"), (DIABETES, "cross_entropy"), (DIABETES, "nll_loss")]
)
def test_a_loss_for_the_other_task_is_a_422_naming_it(client, alice, base, loss):
    response = submit(client, alice, base, "pytorch", loss=loss)
    assert_error(response, 422, "training.loss")
    assert "does not fit" in response.get_json()["error"]["message"]


def test_an_unknown_loss_is_a_422(client, alice):
    assert_error(submit(client, alice, DIGITS, "pytorch", loss="hinge_loss"), 422, "training.loss")


@pytest.mark.parametrize(
    "written,stored",
    [
        ("Adam", "adam"),
        ("AdamW", "adamw"),
        ("SGD", "sgd"),
        ("RMSprop", "rmsprop"),
        ("RMSProp", "rmsprop"),
        ("adam", "adam"),
    ],
)
def test_optimizers_in_either_frameworks_spelling(client, alice, written, stored):
    created = submit(client, alice, DIGITS, "pytorch", optimizer=written)
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["spec"]["training"]["optimizer"] == stored


def test_the_catalog_lists_every_loss_and_its_other_names(client, alice):
    listed = client.get("/api/v1/algorithms", headers=alice).get_json()["networks"]["losses"]
    assert {entry["name"] for entry in listed} == {"sparse_categorical_crossentropy", "mse", "mae", "huber"}
    cross_entropy = next(entry for entry in listed if entry["name"] == "sparse_categorical_crossentropy")
    assert {"cross_entropy", "nll_loss"} <= set(cross_entropy["also_accepted"])
    every_name = {name for entry in listed for name in (entry["name"], *entry["also_accepted"])}
    assert every_name == set(losses.NAMES)
