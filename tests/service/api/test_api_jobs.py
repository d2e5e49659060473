"""Submitting, reading, listing and cancelling jobs through the API (PostgreSQL + Redis)."""

from __future__ import annotations

import json

import pytest

from service.core import storage
from tests.support.api import IRIS_KNN, assert_error
from tests.support.broker import waiting_messages

pytestmark = pytest.mark.fast  # the fast tier: no servers needed (tests/conftest.py)


def test_submit_stores_a_queued_job_and_leaves_sending_to_the_dispatcher(client, alice, settings):
    response = client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice)
    assert response.status_code == 201
    job = response.get_json()
    assert response.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["queue"] == "cpu" and job["owner"] == "alice"
    assert job["position"] == 1 and job["name"] == "iris-knn"
    assert job["spec"]["task"] == "classification"
    assert job["spec"]["params"]["weights"] == "uniform"  # defaults are filled in and stored
    assert job["created_at"].endswith("Z") and job["started_at"] is None

    # Nothing is sent at submit: the dispatcher sends when a worker slot is free.
    assert not [m for m in waiting_messages(settings.broker_url, "cpu") if job["id"] in m]

    fetched = client.get(f"/api/v1/jobs/{job['id']}", headers=alice).get_json()
    assert fetched["id"] == job["id"] and fetched["status"] == "queued"
    events = client.get(f"/api/v1/jobs/{job['id']}/events", headers=alice).get_json()["items"]
    assert events[0]["type"] == "status" and events[0]["data"] == {"status": "queued", "by": "alice"}


@pytest.mark.parametrize(
    "spec,field,code",
    [
        ({"dataset": "iris", "algorithm": "nope"}, "algorithm", "unknown_algorithm"),
        ({"dataset": "nope", "algorithm": "knn"}, "dataset", "unknown_dataset"),
        ({"dataset": "iris", "algorithm": "knn", "params": {"n_neighbors": -1}}, "params.n_neighbors", None),
        ({"dataset": "iris", "algorithm": "knn", "params": {"n_neighbors": "5"}}, "params.n_neighbors", None),
        ({"dataset": "iris", "algorithm": "knn", "params": {"n_neighbors": 2.5}}, "params.n_neighbors", None),
        ({"dataset": "iris", "algorithm": "knn", "params": {"n_neighbors": True}}, "params.n_neighbors", None),
        ({"dataset": "iris", "algorithm": "knn", "params": {"k": 3}}, "params.k", None),
        ({"dataset": "iris", "algorithm": "knn", "params": {"weights": "far"}}, "params.weights", None),
        ({"dataset": "iris", "algorithm": "knn", "params": {"n_neighbors": 500}}, "params.n_neighbors", None),
        ({"dataset": "iris", "algorithm": "knn", "params": []}, "params", None),
        ({"dataset": "iris", "algorithm": "svm", "params": {"kernel": "sigmoid"}}, "params.kernel", None),
        ({"dataset": "iris", "algorithm": "svm", "params": {"gamma": -1}}, "params.gamma", None),
        ({"dataset": "iris", "algorithm": "svm", "params": {"C": 0}}, "params.C", None),
        (
            {"dataset": "iris", "algorithm": "decision_tree", "params": {"criterion": "squared_error"}},
            "params.criterion",
            None,
        ),
        (
            {"dataset": "diabetes", "algorithm": "random_forest", "params": {"class_weight": "balanced"}},
            "params.class_weight",
            None,
        ),
        ({"dataset": "iris", "algorithm": "kmeans", "params": {"n_clusters": 151}}, "params.n_clusters", None),
        ({"dataset": "iris", "algorithm": "pca", "params": {"n_components": 5}}, "params.n_components", None),
        ({"dataset": "iris", "algorithm": "linear_regression"}, "task", None),
        ({"dataset": "iris", "algorithm": "logistic_regression", "params": {"l1_ratio": 0.5}}, "params.solver", None),
        ({"dataset": "iris", "algorithm": "logistic_regression", "params": {"l1_ratio": 1.0}}, "params.solver", None),
        (
            {"dataset": "iris", "algorithm": "logistic_regression", "params": {"solver": "liblinear"}},
            "params.solver",
            None,
        ),
        (
            {"dataset": "iris", "algorithm": "random_forest", "params": {"bootstrap": False, "max_samples": 0.5}},
            "params.max_samples",
            None,
        ),
        (
            {"dataset": "iris", "algorithm": "pca", "params": {"svd_solver": "arpack", "n_components": 4}},
            "params.n_components",
            None,
        ),
        (
            {"dataset": "iris", "algorithm": "pca", "params": {"svd_solver": "randomized", "n_components": 0.9}},
            "params.n_components",
            None,
        ),
        ({"dataset": "diabetes", "algorithm": "logistic_regression"}, "task", None),
        ({"dataset": "iris", "algorithm": "knn", "task": "clustering"}, "task", None),
        ({"dataset": "iris", "algorithm": "knn", "task": "telepathy"}, "task", None),
        ({"dataset": "iris", "algorithm": "knn", "evaluation": {"test_size": 1.5}}, "evaluation.test_size", None),
        ({"dataset": "iris", "algorithm": "knn", "evaluation": {"test_size": 0.01}}, "evaluation.test_size", None),
        ({"dataset": "iris", "algorithm": "knn", "evaluation": {"cv": 1}}, "evaluation.cv", None),
        ({"dataset": "iris", "algorithm": "knn", "evaluation": {"seed": -3}}, "evaluation.seed", None),
        ({"dataset": "iris", "algorithm": "knn", "evaluation": {"folds": 3}}, "evaluation.folds", None),
        ({"dataset": "iris", "algorithm": "knn", "device": "gpu"}, "device", None),
        ({"dataset": "iris", "algorithm": "knn", "device": "tpu"}, "device", None),
        ({"dataset": "iris", "algorithm": "knn", "colour": "red"}, "colour", None),
        ({"dataset": 7, "algorithm": "knn"}, "dataset", None),
        ({"dataset": {"target": "x"}, "algorithm": "knn"}, "dataset", None),
        ({"algorithm": "knn"}, "dataset", None),
        ({"dataset": "iris"}, "algorithm", None),
        ({"dataset": "iris", "algorithm": "knn", "optimize": {}}, "optimize", None),
        ({"dataset": "iris", "algorithm": 5}, "algorithm", None),
        ({"dataset": "iris", "algorithm": "knn", "name": ""}, "name", None),
    ],
)
def test_invalid_specs_are_422_naming_the_field(client, alice, spec, field, code):
    error = assert_error(client.post("/api/v1/jobs", json=spec, headers=alice), 422, field, code)
    assert field.split(".")[-1] in error["message"] or error["details"]["field"] == field
    assert client.get("/api/v1/jobs", headers=alice).get_json()["items"] == []  # nothing half-written


@pytest.mark.parametrize("ref", [{"id": "0123"}, {"id": "0123", "target": "label"}])
def test_an_unknown_dataset_id_is_404(client, alice, ref):
    error = assert_error(
        client.post("/api/v1/jobs", json={"dataset": ref, "algorithm": "knn"}, headers=alice),
        404,
        "dataset.id",
        "not_found",
    )
    assert error["message"] == "no data set with id '0123'"
    assert client.get("/api/v1/jobs", headers=alice).get_json()["items"] == []


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2", "\u00e9t\u00e9".encode("latin-1")])
def test_malformed_json_is_400(client, alice, body):
    assert_error(
        client.post("/api/v1/jobs", data=body, headers={**alice, "Content-Type": "application/json"}),
        400,
        "body",
        "invalid_json",
    )


@pytest.mark.parametrize("body", [[1, 2], "knn", 5, None])
def test_a_spec_that_is_not_an_object_is_422(client, alice, body):
    assert_error(client.post("/api/v1/jobs", data=json.dumps(body), headers=alice), 422, "body")


def test_every_route_needs_a_valid_token(client, alice):
    for method, path in [
        ("get", "/api/v1/jobs"),
        ("post", "/api/v1/jobs"),
        ("get", "/api/v1/models"),
        ("get", "/api/v1/algorithms"),
        ("get", "/api/v1/datasets"),
        ("get", "/api/v1/queue"),
    ]:
        assert_error(getattr(client, method)(path), 401, code="unauthorized")
        assert_error(getattr(client, method)(path, headers={"Authorization": "Bearer wrong"}), 401)
        assert_error(getattr(client, method)(path, headers={"Authorization": "Basic abc"}), 401)
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_unknown_ids_and_routes_are_404(client, alice):
    assert_error(client.get("/api/v1/jobs/does-not-exist", headers=alice), 404, "id", "not_found")
    assert_error(client.get("/api/v1/jobs/" + "x" * 300, headers=alice), 404)
    assert_error(client.get("/api/v1/jobs/nope/events", headers=alice), 404)
    assert_error(client.post("/api/v1/jobs/nope/cancel", headers=alice), 404)
    assert_error(client.get("/api/v1/nothing-here", headers=alice), 404)
    assert_error(client.delete("/api/v1/jobs", headers=alice), 405)


def test_another_users_job_is_a_404_like_an_unknown_one(client, alice, bob):
    job = client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).get_json()
    for path in (f"/api/v1/jobs/{job['id']}", f"/api/v1/jobs/{job['id']}/events", f"/api/v1/jobs/{job['id']}/log"):
        assert_error(client.get(path, headers=bob), 404)
    assert_error(client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=bob), 404)
    assert client.get("/api/v1/jobs", headers=bob).get_json()["items"] == []
    assert client.get(f"/api/v1/jobs/{job['id']}", headers=alice).get_json()["status"] == "queued"


def test_the_log_is_read_from_an_offset_and_past_its_end_is_its_end(client, alice, settings):
    job = client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).get_json()
    path = storage.job_log_path(settings, job["id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"first line\nsecond line\n")
    whole = client.get(f"/api/v1/jobs/{job['id']}/log", headers=alice)
    assert whole.text == "first line\nsecond line\n" and whole.headers["X-Log-Offset"] == "23"
    rest = client.get(f"/api/v1/jobs/{job['id']}/log?offset=11", headers=alice)
    assert rest.text == "second line\n" and rest.headers["X-Log-Offset"] == "23"
    for offset in (23, 10**15, 2**62):
        past = client.get(f"/api/v1/jobs/{job['id']}/log?offset={offset}", headers=alice)
        assert past.status_code == 200 and past.text == "" and past.headers["X-Log-Offset"] == "23"
    assert_error(client.get(f"/api/v1/jobs/{job['id']}/log?offset=-1", headers=alice), 422, "offset")


def test_admins_see_everyones_jobs(client, alice, make_user):
    admin = make_user("root", admin=True)
    job = client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).get_json()
    items = client.get("/api/v1/jobs", headers=admin).get_json()["items"]
    assert [(i["id"], i["owner"]) for i in items] == [(job["id"], "alice")]


def test_cancel_a_queued_job_at_once_and_not_twice(client, alice):
    job = client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).get_json()
    response = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=alice)
    assert response.status_code == 202 and response.get_json()["status"] == "cancelled"
    fetched = client.get(f"/api/v1/jobs/{job['id']}", headers=alice).get_json()
    assert fetched["status"] == "cancelled" and fetched["finished_at"] and fetched["position"] is None
    assert_error(client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=alice), 409, code="wrong_state")


def test_listing_pages_with_a_cursor_and_filters_by_status(client, alice):
    ids = [client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).get_json()["id"] for _ in range(5)]
    client.post(f"/api/v1/jobs/{ids[0]}/cancel", headers=alice)
    first = client.get("/api/v1/jobs?limit=2", headers=alice).get_json()
    assert [i["id"] for i in first["items"]] == ids[::-1][:2]
    second = client.get(f"/api/v1/jobs?limit=2&cursor={first['next_cursor']}", headers=alice).get_json()
    third = client.get(f"/api/v1/jobs?limit=2&cursor={second['next_cursor']}", headers=alice).get_json()
    assert [i["id"] for i in second["items"] + third["items"]] == ids[::-1][2:]
    assert third["next_cursor"] is None
    cancelled = client.get("/api/v1/jobs?status=cancelled", headers=alice).get_json()["items"]
    assert [i["id"] for i in cancelled] == [ids[0]]
    queued = [i["position"] for i in client.get("/api/v1/jobs?status=queued", headers=alice).get_json()["items"]]
    assert queued == [4, 3, 2, 1]
    assert_error(client.get("/api/v1/jobs?status=done", headers=alice), 422, "status")
    assert_error(client.get("/api/v1/jobs?limit=0", headers=alice), 422, "limit")
    assert_error(client.get("/api/v1/jobs?limit=ten", headers=alice), 422, "limit")
    assert_error(client.get(f"/api/v1/jobs/{ids[1]}/events?after=-1", headers=alice), 422, "after")


def test_queue_overview_counts_jobs_and_lists_mine(client, alice, bob):
    client.post("/api/v1/jobs", json=IRIS_KNN, headers=bob)
    mine = client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).get_json()
    overview = client.get("/api/v1/queue", headers=alice).get_json()
    assert overview["queues"]["cpu"]["queued"] == 2
    gpu = overview["queues"]["gpu"]
    assert (gpu["queued"], gpu["running"], gpu["workers"], gpu["backend"], gpu["device"]) == (0, 0, [], "celery", "gpu")
    assert [(j["id"], j["position"]) for j in overview["your_queued_jobs"]] == [(mine["id"], 2)]


def test_catalog_lists_every_algorithm_with_its_parameters(client, alice):
    algorithms = {a["name"]: a for a in client.get("/api/v1/algorithms", headers=alice).get_json()["algorithms"]}
    assert set(algorithms) >= {
        "knn",
        "kmeans",
        "decision_tree",
        "random_forest",
        "svm",
        "pca",
        "linear_regression",
        "logistic_regression",
    }
    knn = {p["name"]: p for p in algorithms["knn"]["parameters"]}
    assert knn["n_neighbors"]["default"] == 5
    assert knn["n_neighbors"]["accepts"] == [{"type": "integer", "minimum": 1, "maximum": 10000}]
    assert knn["weights"]["accepts"] == [{"type": "choice", "choices": ["uniform", "distance"]}]
    assert algorithms["svm"]["tasks"] == ["classification", "regression"]
    kernel = {p["name"]: p for p in algorithms["svm"]["parameters"]}["kernel"]
    assert kernel["accepts"][0]["choices"] == ["linear", "rbf", "poly"]
