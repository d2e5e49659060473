"""A job's `queue`: a named queue LABTRAIN_QUEUES adds is chosen at submit and checked there (an
unknown queue, resources past its max, a GPU job on a CPU queue: 422s naming the field); without
it the device picks cpu or gpu as before; GET /api/v1/queue lists every queue; LABTRAIN_QUEUES
itself is checked, naming the key."""

from __future__ import annotations

import dataclasses
import json

import pytest

from service.core import queues
from service.core.orm import Job
from service.courses.usage import kind_of
from tests.service.code.test_sources import SCRIPT, upload
from tests.support.api import assert_error
from tests.support.workers import heartbeat

pytestmark = pytest.mark.fast

QUEUES = {
    "small": {"backend": "celery", "max": {"cpus": 1, "memory_mb": 1024, "time_limit_s": 600}},
    "a100": {
        "backend": "slurm",
        "partition": "gpu-a100",
        "device": "gpu",
        "max_running": 3,
        "accounts": {"ML 101": "ml101"},
        "description": "the cluster's A100s",
    },
}
CLASSIC = {"dataset": "iris", "algorithm": "knn"}
NETWORK = {"dataset": "digits", "framework": "pytorch", "network": {"preset": "feedforward"}}


@pytest.fixture
def settings(settings):
    return dataclasses.replace(settings, queues=json.dumps(QUEUES))


@pytest.fixture
def script(client, alice):
    return upload(client, alice, SCRIPT, "train.py").get_json()["id"]


def post(client, headers, spec):
    return client.post("/api/v1/jobs", json=spec, headers=headers)


def test_a_named_queue_is_the_jobs_and_shows_in_it(client, alice, db):
    created = post(client, alice, {**CLASSIC, "queue": "small"})
    assert created.status_code == 201, created.get_json()
    job = client.get(f"/api/v1/jobs/{created.get_json()['id']}", headers=alice).get_json()
    assert job["queue"] == "small"
    with db.session() as session:  # what it did not ask for stays within the queue's max
        assert session.get(Job, job["id"]).time_limit_s == 600
    # Without a queue the device picks cpu or gpu, as before.
    assert post(client, alice, CLASSIC).get_json()["queue"] == "cpu"
    assert post(client, alice, {**NETWORK, "device": "gpu"}).get_json()["queue"] == "gpu"


def test_a_gpu_job_on_a_named_gpu_queue_holds_a_gpu_and_spends_gpu_hours(client, alice):
    job = post(client, alice, {**NETWORK, "queue": "a100"}).get_json()
    assert (job["queue"], job["spec"]["device"]) == ("a100", "gpu")  # device auto: the queue's
    assert job["gpu_memory_mb"] and kind_of("a100", job["gpu_memory_mb"]) == "gpu_hours"
    assert kind_of("small", None) == "cpu_hours" and kind_of("gpu", None) == "gpu_hours"


def test_an_unknown_queue_is_a_422_listing_the_queues(client, alice):
    error = assert_error(post(client, alice, {**CLASSIC, "queue": "bigmem"}), 422, "queue", "unknown_queue")
    assert error["details"]["queues"] == ["cpu", "gpu", "small", "a100"]
    assert all(name in error["message"] for name in ("cpu", "gpu", "small", "a100"))
    assert_error(post(client, alice, {**CLASSIC, "queue": 7}), 422, "queue")


def test_a_job_that_does_not_fit_its_queues_device_is_a_422(client, alice, script):
    error = assert_error(post(client, alice, {**NETWORK, "device": "gpu", "queue": "small"}), 422, "queue")
    assert "has no GPUs" in error["message"] and "a100" in error["message"]
    assert_error(post(client, alice, {**NETWORK, "device": "cpu", "queue": "a100"}), 422, "queue")
    error = assert_error(post(client, alice, {**CLASSIC, "queue": "a100"}), 422, "queue")
    assert "run on the CPU" in error["message"]
    optimize = {"optimize": {"strategy": "ga", "function": "sphere"}, "queue": "gpu"}
    assert_error(post(client, alice, optimize), 422, "queue")
    assert_error(post(client, alice, {"code": {"source": script}, "device": "gpu", "queue": "small"}), 422, "queue")


@pytest.mark.parametrize(
    "resources,field",
    [({"cpus": 2}, "resources.cpus"), ({"memory_mb": 2048}, "resources.memory_mb"), ({"time_limit_s": 601}, None)],
)
def test_resources_past_the_queues_max_are_a_422_naming_them(client, alice, script, resources, field):
    field = field or f"resources.{next(iter(resources))}"
    error = assert_error(
        post(client, alice, {"code": {"source": script}, "resources": resources, "queue": "small"}), 422, field
    )
    assert "on queue small" in error["message"] and error["details"]["queue"] == "small"
    # Within the user's own limits, the same on the cpu queue is taken.
    assert post(client, alice, {"code": {"source": script}, "resources": resources}).status_code == 201


def test_what_a_code_job_did_not_ask_for_stays_within_its_queue(client, alice, script):
    job = post(client, alice, {"code": {"source": script}, "queue": "small"}).get_json()
    assert job["spec"]["resources"] == {"memory_mb": 1024, "cpus": 1, "time_limit_s": 600}


def test_a_searchs_trials_take_the_searchs_queue(client, alice):
    search = {"strategy": "random", "trials": 2, "space": {"n_neighbors": {"type": "int", "low": 1, "high": 5}}}
    job = post(client, alice, {**CLASSIC, "queue": "small", "search": search}).get_json()
    assert job["queue"] == "small" and job["spec"]["search"]["base"]["queue"] == "small"  # each trial's spec
    assert_error(post(client, alice, {**CLASSIC, "queue": "nope", "search": search}), 422, "queue")


def test_the_queue_overview_lists_every_queue_with_its_backend_and_limits(client, alice, db):
    heartbeat(db, "small1", "small", concurrency=2)
    post(client, alice, {**CLASSIC, "queue": "small"})
    found = client.get("/api/v1/queue", headers=alice).get_json()["queues"]
    assert list(found) == ["cpu", "gpu", "small", "a100"]
    small, a100 = found["small"], found["a100"]
    assert (small["backend"], small["device"], small["partition"]) == ("celery", "cpu", None)
    assert small["max"] == {"cpus": 1, "memory_mb": 1024, "time_limit_s": 600}
    assert (small["queued"], small["running"], [w["name"] for w in small["workers"]]) == (1, 0, ["small1"])
    assert (a100["backend"], a100["device"], a100["partition"]) == ("slurm", "gpu", "gpu-a100")
    assert (a100["max_running"], a100["your_max_running"], a100["description"]) == (3, 3, "the cluster's A100s")
    assert "accounts" not in a100  # what SLURM is told stays the admins'
    assert found["cpu"]["max_running"] is None and found["cpu"]["your_max_running"] == 4


def test_a_worker_refuses_a_queue_no_one_configured(settings, monkeypatch):
    from click.testing import CliRunner

    from service.cli.worker import worker

    monkeypatch.setenv("LABTRAIN_QUEUES", json.dumps(QUEUES))
    result = CliRunner().invoke(worker, ["--queues", "cpu,bigmem"])
    assert result.exit_code == 2 and "bigmem" in result.output and "small" in result.output
    # a100 is SLURM's: no Celery worker serves it.
    assert CliRunner().invoke(worker, ["--queues", "a100"]).exit_code == 2


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        (json.dumps({"Big": {"backend": "celery"}}), "LABTRAIN_QUEUES.Big"),
        (json.dumps({"a" * 17: {"backend": "celery"}}), "up to 16"),
        (json.dumps({"big": {"backend": "celery", "device": "tpu"}}), "LABTRAIN_QUEUES.big.device"),
        (json.dumps({"gpu": {"backend": "celery", "device": "cpu"}}), "LABTRAIN_QUEUES.gpu.device"),
        (json.dumps({"big": {"backend": "celery", "partition": "x"}}), "a celery queue takes no other keys"),
        (json.dumps({"big": {"backend": "celery", "max": {"gpus": 1}}}), "LABTRAIN_QUEUES.big.max"),
        (json.dumps({"big": {"backend": "celery", "max_running": "2"}}), "LABTRAIN_QUEUES.big.max_running"),
        (json.dumps({"big": {"backend": "celery", "description": 5}}), "LABTRAIN_QUEUES.big.description"),
        ("big:\n  backend: celery\n  device: [", "not valid JSON or YAML"),
    ],
)
def test_each_mistake_in_the_queues_is_an_error_naming_its_key(raw, names, tmp_path):
    if not raw.startswith("{"):
        path = tmp_path / "queues.yaml"
        path.write_text(raw)
        raw = str(path)
    with pytest.raises(ValueError, match=names.replace(".", r"\.")):
        queues.load(raw)


def test_the_api_refuses_to_start_on_a_bad_queue_map(settings):
    from service.api import create_app

    with pytest.raises(ValueError, match="LABTRAIN_QUEUES.big.backend"):
        create_app(dataclasses.replace(settings, queues=json.dumps({"big": {"backend": "pbs"}})))
