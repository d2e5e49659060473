"""Gradient boosting, added through the classic family alone: its parameters are checked at
submit time against the task and the data, listed in the catalog, and searchable."""

from __future__ import annotations

import io

import pytest

from tests.support.api import assert_error

pytestmark = pytest.mark.fast

WINE = {"dataset": "wine", "algorithm": "gradient_boosting"}
DIABETES = {"dataset": "diabetes", "algorithm": "gradient_boosting"}


def test_defaults_are_filled_in_for_either_task(client, alice):
    classified = client.post("/api/v1/jobs", json=WINE, headers=alice).get_json()
    assert classified["spec"]["task"] == "classification"
    assert classified["spec"]["params"]["max_iter"] == 100 and classified["spec"]["params"]["loss"] is None
    regressed = client.post("/api/v1/jobs", json={**DIABETES, "params": {"loss": "poisson"}}, headers=alice)
    assert regressed.status_code == 201 and regressed.get_json()["spec"]["task"] == "regression"


@pytest.mark.parametrize(
    "spec,field",
    [
        ({**WINE, "params": {"loss": "squared_error"}}, "params.loss"),
        ({**DIABETES, "params": {"loss": "log_loss"}}, "params.loss"),
        ({**DIABETES, "params": {"loss": "quantile"}}, "params.quantile"),
        ({**DIABETES, "params": {"quantile": 0.5}}, "params.quantile"),
        ({**DIABETES, "params": {"class_weight": "balanced"}}, "params.class_weight"),
        ({**WINE, "params": {"learning_rate": 0}}, "params.learning_rate"),
        ({**WINE, "params": {"max_bins": 300}}, "params.max_bins"),
        ({**WINE, "params": {"early_stopping": "yes"}}, "params.early_stopping"),
        ({**WINE, "params": {"max_leaf_nodes": 1}}, "params.max_leaf_nodes"),
        ({**WINE, "task": "clustering"}, "task"),
    ],
)
def test_parameters_that_cannot_fit_are_a_422_naming_them(client, alice, spec, field):
    assert_error(client.post("/api/v1/jobs", json=spec, headers=alice), 422, field)


def test_a_gamma_loss_needs_a_positive_target(client, alice):
    rows = "x,y\n" + "".join(f"{i},{i - 5}\n" for i in range(40))
    uploaded = client.post(
        "/api/v1/datasets",
        data={"file": (io.BytesIO(rows.encode()), "t.csv"), "target": "y"},
        headers=alice,
        content_type="multipart/form-data",
    )
    spec = {
        "dataset": {"id": uploaded.get_json()["id"]},
        "algorithm": "gradient_boosting",
        "task": "regression",
        "params": {"loss": "gamma"},
    }
    assert_error(client.post("/api/v1/jobs", json=spec, headers=alice), 422, "params.loss")


def test_missing_values_need_no_imputation(client, alice):
    rows = "a,b,label\n" + "".join(f"{'' if i % 7 == 0 else i},{i % 5},{i % 2}\n" for i in range(60))
    uploaded = client.post(
        "/api/v1/datasets",
        data={"file": (io.BytesIO(rows.encode()), "gaps.csv"), "target": "label"},
        headers=alice,
        content_type="multipart/form-data",
    )
    dataset = {"id": uploaded.get_json()["id"]}
    assert (
        client.post(
            "/api/v1/jobs", json={"dataset": dataset, "algorithm": "gradient_boosting"}, headers=alice
        ).status_code
        == 201
    )
    assert_error(
        client.post("/api/v1/jobs", json={"dataset": dataset, "algorithm": "random_forest"}, headers=alice),
        422,
        "preprocessing.impute",
    )


def test_it_is_in_the_catalog_and_a_search_can_vary_it(client, alice):
    listed = {a["name"]: a for a in client.get("/api/v1/algorithms", headers=alice).get_json()["algorithms"]}
    boosting = listed["gradient_boosting"]
    assert boosting["tasks"] == ["classification", "regression"] and boosting["probabilities"] is True
    assert {"learning_rate", "max_iter", "max_leaf_nodes", "l2_regularization"} <= {
        p["name"] for p in boosting["parameters"]
    }
    search = {
        **WINE,
        "search": {
            "strategy": "tpe",
            "trials": 4,
            "space": {
                "learning_rate": {"type": "float", "low": 0.01, "high": 0.5, "log": True},
                "max_leaf_nodes": {"type": "int", "low": 4, "high": 64},
            },
        },
    }
    assert client.post("/api/v1/jobs", json=search, headers=alice).status_code == 201
    out_of_bounds = {
        **search,
        "search": {**search["search"], "space": {"max_bins": {"type": "int", "low": 2, "high": 999}}},
    }
    assert_error(client.post("/api/v1/jobs", json=out_of_bounds, headers=alice), 422, "search.space.max_bins.high")
