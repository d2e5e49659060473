"""The job-family registry at work: a family registered from the test suite alone is
validated, listed in the catalog, and run by a real worker, with no change to the service."""

from __future__ import annotations

import pytest

from service.jobs import families
from tests.conftest import free_port
from tests.service.jobs.toy_family import FAMILY
from tests.support.api import assert_error
from tests.support.processes import Client, create_user_token, deployment_env, start_stack, stop_all, wait_until_healthy

TOY = {"name": "counting", "toy": {"count": 4, "word": "tock"}}


@pytest.fixture
def toy_registered():
    families.register(FAMILY)
    yield FAMILY
    families.unregister(FAMILY.name)


@pytest.mark.fast
def test_a_registered_family_is_validated_stored_and_listed(client, alice, toy_registered):
    created = client.post("/api/v1/jobs", json=TOY, headers=alice)
    assert created.status_code == 201, created.get_json()
    job = created.get_json()
    assert job["family"] == "toy" and job["queue"] == "cpu"
    assert job["spec"] == {"name": "counting", "toy": {"count": 4, "word": "tock"}, "device": "cpu"}

    assert_error(client.post("/api/v1/jobs", json={"toy": {"count": 0}}, headers=alice), 422, "toy.count")
    assert_error(client.post("/api/v1/jobs", json={"toy": {"word": "boom"}}, headers=alice), 422, "toy.word")
    both = client.post("/api/v1/jobs", json={**TOY, "algorithm": "knn", "dataset": "iris"}, headers=alice)
    assert_error(both, 422, "toy")
    assert "toy (a test's own family)" in both.get_json()["error"]["message"]

    catalog = client.get("/api/v1/algorithms", headers=alice).get_json()
    assert catalog["toys"][0]["name"] == "toy"
    assert catalog["families"][-1] == {"name": "toy", "key": "toy", "title": "toy", "section": "toys"}
    assert {p["name"] for p in catalog["toys"][0]["parameters"]} == {"count", "word"}
    document = client.get("/api/v1/openapi.json", headers=alice).get_json()
    assert "ToySpec" in document["components"]["schemas"]

    # A family without search hooks cannot carry a search; without a model it says what it gives.
    searched = client.post(
        "/api/v1/jobs",
        json={**TOY, "search": {"strategy": "random", "space": {"count": {"type": "int", "low": 1, "high": 5}}}},
        headers=alice,
    )
    assert_error(searched, 422, "search")
    no_model = client.get(f"/api/v1/models/{job['id']}", headers=alice)
    assert no_model.status_code == 409 and "it counts, and makes no model" in no_model.get_json()["error"]["message"]


@pytest.mark.fast
def test_an_unregistered_family_is_unknown_again(client, alice):
    assert_error(client.post("/api/v1/jobs", json=TOY, headers=alice), 422, "algorithm")
    assert "toys" not in client.get("/api/v1/algorithms", headers=alice).get_json()


def test_a_real_worker_runs_a_family_it_learns_from_the_environment(tmp_path, make_pg_database, make_redis_url):
    env = deployment_env(
        tmp_path,
        LABTRAIN_DATABASE_URL=make_pg_database(),
        LABTRAIN_BROKER_URL=make_redis_url(),
        LABTRAIN_FAMILIES="tests.service.jobs.toy_plugin",
    )
    token = create_user_token(env, "tess")
    port = free_port()
    processes = start_stack(env, tmp_path, port, ["--queues", "cpu", "--concurrency", "1"])
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", processes)
        client = Client(f"http://127.0.0.1:{port}", token)
        job_id = client.post("/api/v1/jobs", json=TOY).json()["id"]
        job = client.wait_for(job_id, timeout=60)
        assert job["status"] == "succeeded", job["error"]
        assert job["result"] == {"said": ["tock 1", "tock 2", "tock 3", "tock 4"]}
        assert job["metrics"] == {"count": 4} and job["progress"]["fraction"] == 1.0
        logs = [
            e["data"]["message"]
            for e in client.get(f"/api/v1/jobs/{job_id}/events").json()["items"]
            if e["type"] == "log"
        ]
        assert logs == ["tock 1", "tock 2", "tock 3", "tock 4"]
    finally:
        stop_all(processes)
