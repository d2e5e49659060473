"""Malformed requests get a 4xx in the error shape, never a 500: bodies nested too deeply to
read, and query parameters that are not what they must be."""

from __future__ import annotations

import pytest

from tests.service.api.test_api_datasets_models import submit_and_run
from tests.support.api import IRIS_KNN, assert_error

pytestmark = pytest.mark.fast


@pytest.mark.parametrize("depth", [100_000, 5_000, 65])
def test_a_body_nested_too_deeply_is_a_400(client, alice, depth):
    body = "[" * depth + "]" * depth
    response = client.post("/api/v1/jobs", data=body, headers={**alice, "Content-Type": "application/json"})
    assert_error(response, 400, "body", "invalid_json")
    nested = '{"algorithm": "knn", "dataset": "iris", "params": ' + '{"a": ' * depth + "1" + "}" * depth + "}"
    response = client.post("/api/v1/jobs", data=nested, headers={**alice, "Content-Type": "application/json"})
    assert_error(response, 400, "body", "invalid_json")
    assert client.get("/api/v1/jobs", headers=alice).get_json()["items"] == []


def test_a_deep_predict_body_is_a_400_too(client, alice, run_queued):
    model_id = submit_and_run(client, alice, run_queued, IRIS_KNN)["result"]["model_id"]
    body = '{"instances": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = client.post(
        f"/api/v1/models/{model_id}/predict", data=body, headers={**alice, "Content-Type": "application/json"}
    )
    assert_error(response, 400, "body", "invalid_json")
    deep_row = '{"instances": [' + "[" * 500 + "]" * 500 + "]}"  # readable, but no row of features
    response = client.post(
        f"/api/v1/models/{model_id}/predict", data=deep_row, headers={**alice, "Content-Type": "application/json"}
    )
    assert_error(response, 422, "instances.0")


def test_a_spec_as_deep_as_a_real_one_is_read(client, alice):
    search = {
        **IRIS_KNN,
        "search": {
            "strategy": "random",
            "trials": 2,
            "space": {"weights": {"type": "categorical", "choices": ["uniform", "distance"]}},
        },
    }
    assert client.post("/api/v1/jobs", json=search, headers=alice).status_code == 201


@pytest.mark.parametrize("cursor", ["garbage", "0" * 21, "0" * 23, "ZZZZZZZZZZZZZZZZZZZZZZ", "'; drop table jobs"])
def test_a_cursor_that_no_page_gave_is_a_422(client, alice, cursor):
    assert_error(client.get("/api/v1/jobs", query_string={"cursor": cursor}, headers=alice), 422, "cursor")


def test_the_cursor_of_a_page_leads_to_the_next(client, alice):
    for _ in range(3):
        assert client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).status_code == 201
    first = client.get("/api/v1/jobs?limit=2", headers=alice).get_json()
    second = client.get(
        "/api/v1/jobs", query_string={"limit": 2, "cursor": first["next_cursor"]}, headers=alice
    ).get_json()
    assert len(first["items"]) == 2 and len(second["items"]) == 1 and second["next_cursor"] is None
