"""What a job asks of the scheduler at submit: its tier (debug jobs are short; asking for more
is a 422 naming `tier`) and, on the GPU queue, its GPU memory (a default per family, at most the
largest GPU online; more is a 422 naming resources.gpu_memory_mb)."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import select

from service.core.errors import SpecError
from service.core.orm import Job
from service.jobs import tiers
from service.search.driver import SearchDriver
from tests.support.api import IRIS_KNN, assert_error
from tests.support.workers import heartbeat

pytestmark = pytest.mark.fast

NETWORK = {
    "dataset": "digits",
    "framework": "pytorch",
    "network": {"preset": "feedforward"},
    "device": "gpu",
    "training": {"epochs": 1},
}


def stored(db, job_id):
    with db.session() as session:
        return session.scalar(select(Job).where(Job.id == job_id))


def gpu_online(db, memory_mb):
    heartbeat(db, "gpu0@lab", concurrency=8, gpu_memory_mb=memory_mb, gpu_name="NVIDIA H200")


def test_a_job_is_batch_unless_it_says_debug_and_a_debug_job_runs_short(client, alice, db, settings):
    batch = client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).get_json()
    debug = client.post("/api/v1/jobs", json={**IRIS_KNN, "tier": "debug"}, headers=alice).get_json()
    assert (batch["tier"], debug["tier"]) == ("batch", "debug")
    assert stored(db, debug["id"]).time_limit_s == settings.debug_time_limit_s
    assert stored(db, batch["id"]).time_limit_s > settings.debug_time_limit_s


def test_an_unknown_tier_is_a_422_naming_it(client, alice):
    assert_error(client.post("/api/v1/jobs", json={**IRIS_KNN, "tier": "urgent"}, headers=alice), 422, "tier")


def test_a_debug_job_asking_for_more_than_the_debug_limit_is_a_422_naming_tier(settings):
    assert tiers.time_limit(tiers.DEBUG, 300, 86_400, settings) == 300
    assert tiers.time_limit(tiers.DEBUG, None, 86_400, settings) == settings.debug_time_limit_s
    assert tiers.time_limit(tiers.BATCH, 3_600, 86_400, settings) == 3_600
    with pytest.raises(SpecError) as refused:
        tiers.time_limit(tiers.DEBUG, 3_600, 86_400, settings)
    assert refused.value.field == "tier" and "at most 600 s" in refused.value.message


def test_a_search_passes_its_tier_to_its_trials(client, alice, db, settings):
    space = {"n_neighbors": {"type": "int", "low": 1, "high": 5}}
    search = {**IRIS_KNN, "tier": "debug", "search": {"strategy": "random", "trials": 2, "space": space}}
    parent = client.post("/api/v1/jobs", json=search, headers=alice).get_json()
    assert parent["tier"] == "debug"
    SearchDriver(settings, db, "test-dispatcher").run_pending()
    with db.session() as session:
        trials = session.scalars(select(Job).where(Job.parent_id == parent["id"])).all()
    assert trials and {trial.tier for trial in trials} == {"debug"}


def test_a_gpu_job_holds_its_familys_default_or_what_it_asks_at_most_the_largest_gpu(client, alice, db, settings):
    gpu_online(db, 16_000)
    # The setting plus 16 bytes a parameter (weights, gradients, Adam's moments): per preset.
    for preset in ("feedforward", "lenet"):
        body = {**NETWORK, "dataset": "mnist", "network": {"preset": preset}}
        default = client.post("/api/v1/jobs", json=body, headers=alice).get_json()
        parameters = default["spec"]["parameters"]["total"]
        assert default["gpu_memory_mb"] == settings.gpu_memory_network_mb + math.ceil(parameters * 16 / 2**20)
    asked = client.post(
        "/api/v1/jobs", json={**NETWORK, "resources": {"gpu_memory_mb": 8_000}}, headers=alice
    ).get_json()
    assert asked["gpu_memory_mb"] == 8_000 and stored(db, asked["id"]).gpu_memory_mb == 8_000
    too_much = client.post("/api/v1/jobs", json={**NETWORK, "resources": {"gpu_memory_mb": 20_000}}, headers=alice)
    assert_error(too_much, 422, "resources.gpu_memory_mb")
    assert "16000 MB" in too_much.get_json()["error"]["message"]
    assert_error(
        client.post("/api/v1/jobs", json={**NETWORK, "resources": {"gpu_memory_mb": 0}}, headers=alice),
        422,
        "resources.gpu_memory_mb",
    )


def test_a_cpu_job_holds_no_gpu_memory(client, alice):
    job = client.post(
        "/api/v1/jobs", json={**NETWORK, "device": "cpu", "resources": {"gpu_memory_mb": 2_000}}, headers=alice
    ).get_json()
    assert job["queue"] == "cpu" and job["gpu_memory_mb"] is None and job["preemptions"] == 0
