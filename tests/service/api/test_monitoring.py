"""Readiness, Prometheus metrics, rate limits and CORS (against PostgreSQL and Redis)."""

from __future__ import annotations

import dataclasses
import subprocess
import time

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from service.api import create_app
from tests.conftest import free_port
from tests.support.api import IRIS_KNN, assert_error


def samples(text: str) -> dict[tuple, float]:
    """Every sample of a Prometheus text page, parsed by the client library's own parser."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def private_redis():
    """A redis-server of this test's own, which the test may stop and start."""
    port = free_port()
    command = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]

    def start():
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        for _ in range(100):
            try:
                redis.Redis(port=port).ping()
                return server
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    state = {"server": start()}
    yield port, state, start
    state["server"].terminate()
    state["server"].wait()


def test_readyz_follows_the_broker(settings, db, private_redis):
    port, state, start = private_redis
    app = create_app(dataclasses.replace(settings, broker_url=f"redis://127.0.0.1:{port}/0"))
    client = app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["checks"] == {"database": "ok", "broker": "ok"}

    state["server"].terminate()
    state["server"].wait()
    error = assert_error(client.get("/readyz"), 503, code="not_ready")
    assert error["details"]["checks"]["database"] == "ok" and error["details"]["checks"]["broker"] != "ok"
    assert client.get("/healthz").status_code == 200  # alive, only not ready

    state["server"] = start()
    assert client.get("/readyz").status_code == 200
    app.extensions["labtrain"].db.dispose()


def test_readyz_follows_the_database(settings, db):
    app = create_app(dataclasses.replace(settings, database_url="postgresql+psycopg://nobody@127.0.0.1:1/none"))
    error = assert_error(app.test_client().get("/readyz"), 503, code="not_ready")
    assert error["details"]["checks"]["broker"] == "ok" and error["details"]["checks"]["database"] != "ok"


def test_metrics_count_the_jobs_that_ran(client, alice, bob, run_queued):
    ids = [client.post("/api/v1/jobs", json=IRIS_KNN, headers=who).get_json()["id"] for who in (alice, alice, bob)]
    for job_id in ids[:2]:
        run_queued(job_id)
    client.post(f"/api/v1/jobs/{ids[2]}/cancel", headers=bob)
    bad = client.post("/api/v1/jobs", json={"dataset": "iris", "algorithm": "nope"}, headers=alice)
    assert bad.status_code == 422

    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    found = samples(response.get_data(as_text=True))
    assert value(found, "labtrain_jobs_created_total", queue="cpu", family="classic") == 3
    assert value(found, "labtrain_jobs_finished_total", status="succeeded", queue="cpu", family="classic") == 2
    assert value(found, "labtrain_jobs_finished_total", status="cancelled", queue="cpu", family="classic") == 1
    assert value(found, "labtrain_jobs", status="succeeded", queue="cpu", family="classic") == 2
    assert value(found, "labtrain_queue_depth", queue="cpu") == 0
    assert value(found, "labtrain_job_duration_seconds_count", queue="cpu", family="classic", kind="knn") == 2
    assert value(found, "labtrain_queue_wait_seconds_count", queue="cpu") == 2
    usage = {labels: v for (name, labels), v in found.items() if name == "labtrain_user_usage_device_seconds"}
    assert usage[(("queue", "cpu"), ("user", "alice"))] > 0
    # HTTP latency by route template, not by path (one series for every job id).
    submits = value(
        found, "labtrain_http_request_duration_seconds_count", method="POST", route="/api/v1/jobs", status="201"
    )
    assert submits >= 3
    assert (
        value(found, "labtrain_http_request_duration_seconds_count", method="POST", route="/api/v1/jobs", status="422")
        >= 1
    )
    assert not [
        labels
        for (name, labels) in found
        if name.startswith("labtrain_http") and any(ids[0] in str(v) for _k, v in labels)
    ]


def test_metrics_can_require_a_token(settings, db):
    app = create_app(dataclasses.replace(settings, metrics_token="scrape-secret"))
    client = app.test_client()
    assert_error(client.get("/metrics"), 401)
    assert_error(client.get("/metrics", headers={"Authorization": "Bearer wrong"}), 401)
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"}).status_code == 200
    app.extensions["labtrain"].db.dispose()


def test_submit_and_predict_are_rate_limited_per_user(settings, db, make_user, run_queued):
    limited = dataclasses.replace(settings, submit_rate_limit="3/minute", predict_rate_limit="2/minute")
    app = create_app(limited)
    client = app.test_client()
    alice, bob = make_user("alice"), make_user("bob")
    first = [client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice) for _ in range(3)]
    assert [r.status_code for r in first] == [201, 201, 201]
    over = client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice)
    error = assert_error(over, 429, code="rate_limited")
    assert 1 <= int(over.headers["Retry-After"]) <= 60 and error["details"]["limit"] == "3/minute"
    assert client.post("/api/v1/jobs", json=IRIS_KNN, headers=bob).status_code == 201  # per user

    run_queued(first[0].get_json()["id"])
    model_id = client.get(f"/api/v1/jobs/{first[0].get_json()['id']}", headers=alice).get_json()["result"]["model_id"]
    predict = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
    assert [
        client.post(f"/api/v1/models/{model_id}/predict", json=predict, headers=alice).status_code for _ in range(2)
    ] == [200, 200]
    over = client.post(f"/api/v1/models/{model_id}/predict", json=predict, headers=alice)
    assert_error(over, 429, code="rate_limited")
    assert "Retry-After" in over.headers
    # The counts live in Redis (the broker here), so every API process shares them.
    keys = redis.Redis.from_url(settings.broker_url).keys("*labtrain*")
    assert keys
    app.extensions["labtrain"].db.dispose()


def test_cors_is_off(client, alice):
    response = client.get("/api/v1/jobs", headers={**alice, "Origin": "https://elsewhere.example"})
    assert response.status_code == 200 and "Access-Control-Allow-Origin" not in response.headers
    preflight = client.options(
        "/api/v1/jobs", headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"}
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers
