"""The built-ins through the API from a first start: the MNIST subset installed and named as
one, GET /api/v1/datasets saying what is installed and how to get the rest, an admin's fetch
(from a real HTTP server in the test) replacing the subset, and a network job on the subset."""

from __future__ import annotations

import dataclasses
import time

import pytest

from service.data import fetch
from tests.service.api.test_api_datasets_models import submit_and_run
from tests.service.data.test_fetch import FileServer, publish, small_mnist
from tests.support.api import assert_error

SUBSET = "mnist (subset: 6,000 training and 2,000 test digits)"


@pytest.fixture
def full_mnist(monkeypatch):
    """A file server with a small `mnist.npz`, the known table publishing its digest."""
    data = small_mnist()
    server = FileServer({"mnist.npz": data})
    publish(monkeypatch, "mnist", {"mnist.npz": data})
    yield server, data
    server.close()


@pytest.fixture
def app(settings, db, full_mnist):
    """The API started on a data directory with no mnist.npz in it (its first start), with the
    file server as the lab's mirror."""
    from service.api import create_app

    (settings.data_dir / "mnist.npz").unlink()
    application = create_app(dataclasses.replace(settings, datasets_mirror=full_mnist[0].url))
    yield application
    application.extensions["labtrain"].models.close()
    application.extensions["labtrain"].db.dispose()


@pytest.fixture
def admin(make_user):
    return make_user("root", admin=True)


def listed(client, headers) -> dict[str, dict]:
    return {d["id"]: d for d in client.get("/api/v1/datasets", headers=headers).get_json()["items"]}


@pytest.mark.fast
def test_a_first_start_serves_mnist_as_its_subset_and_says_how_to_get_the_rest(client, alice, settings):
    assert (settings.data_dir / "mnist.json").exists()
    items = listed(client, alice)
    mnist = items["mnist"]
    assert mnist["installed"] and mnist["subset"] and mnist["label"] == SUBSET
    assert mnist["rows"] == 8000 and mnist["shape"] == [28, 28, 1] and mnist["size_bytes"] > 1_000_000
    assert "labtrain datasets fetch mnist" in mnist["how"] and mnist["download"] is None
    fashion = items["fashion_mnist"]
    assert not fashion["installed"] and fashion["size_bytes"] is None and fashion["rows"] == 70_000
    assert "labtrain datasets fetch fashion_mnist" in fashion["how"]
    assert not items["cifar10"]["installed"] and items["cifar10"]["shape"] == [32, 32, 3]
    assert items["iris"]["installed"] and items["iris"]["how"] is None
    assert client.get("/api/v1/datasets/mnist", headers=alice).get_json()["label"] == SUBSET

    error = assert_error(
        client.post("/api/v1/jobs", json={**NET, "dataset": "fashion_mnist"}, headers=alice), 422, "dataset"
    )
    assert "labtrain datasets fetch fashion_mnist" in error["message"]


@pytest.mark.fast
def test_an_admin_fetches_the_full_set_in_the_background(client, alice, admin, settings, full_mnist):
    server, data = full_mnist
    assert_error(client.post("/api/v1/datasets/builtin/mnist/fetch", headers=alice), 403, code="forbidden")
    assert_error(client.post("/api/v1/datasets/builtin/imagenet/fetch", headers=admin), 404, "name")
    held = fetch.claim("mnist", settings.data_dir)  # as a `labtrain datasets fetch` running elsewhere
    try:
        assert_error(client.post("/api/v1/datasets/builtin/mnist/fetch", headers=admin), 409, code="fetch_running")
    finally:
        held.release()
    assert server.requests == []

    started = client.post("/api/v1/datasets/builtin/mnist/fetch", headers=admin)
    assert started.status_code == 202, started.get_json()
    assert started.headers["Location"] == "/api/v1/datasets/mnist"
    assert started.get_json()["download"]["state"] in ("running", "done")
    view = wait_for_download(client, admin)
    assert view["download"]["state"] == "done" and view["download"]["done_bytes"] == len(data)
    assert view["installed"] and not view["subset"] and view["label"] == "mnist" and view["how"] is None
    assert view["size_bytes"] == len(data) and view["rows"] == 40
    assert (settings.data_dir / "mnist.npz").read_bytes() == data
    assert not listed(client, alice)["mnist"]["subset"]


@pytest.mark.fast
def test_a_failed_fetch_says_why_in_the_listing(client, admin, settings, full_mnist, monkeypatch):
    publish(monkeypatch, "mnist", {"mnist.npz": b"not the file served"})
    assert client.post("/api/v1/datasets/builtin/mnist/fetch", headers=admin).status_code == 202
    view = wait_for_download(client, admin)
    assert view["download"]["state"] == "failed"
    assert view["download"]["error"]["code"] == "checksum_mismatch"
    assert view["subset"] and view["label"] == SUBSET  # the subset still serves


def wait_for_download(client, headers, limit_s: float = 60.0) -> dict:
    deadline = time.monotonic() + limit_s
    while True:
        view = client.get("/api/v1/datasets/mnist", headers=headers).get_json()
        if view["download"]["state"] != "running" or time.monotonic() > deadline:
            return view
        time.sleep(0.05)


NET = {
    "dataset": "mnist",
    "framework": "pytorch",
    "network": {"preset": "mlp"},
    "training": {"epochs": 1, "batch_size": 64, "seed": 0},
}


def test_a_network_job_on_the_subset_says_it_trained_on_the_subset(client, alice, run_queued):
    job = submit_and_run(client, alice, run_queued, NET)
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["dataset"] == SUBSET
    assert job["metrics"]["accuracy"] > 0.8
