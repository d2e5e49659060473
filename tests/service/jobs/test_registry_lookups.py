"""What code outside a family asks the registry instead of naming the family: the pictures a
model takes (its predictor), the GPU memory a job holds when it said nothing (its family's
default), the examples the OpenAPI document shows (each family's own), and which queue a
device goes to (one rule, service/lab/devices.py)."""

from __future__ import annotations

import dataclasses

import pytest

from service.code.predict import picture_input
from service.core.orm import Job, Model
from service.jobs import families
from service.lab import gpu_packing
from service.lab.devices import queue_for
from tests.support.workers import heartbeat

pytestmark = pytest.mark.fast


def test_a_models_pictures_are_what_its_predictor_says():
    onnx = Model(framework="onnx", input={"shape": [1, 28, 28], "dtype": "float32"}, meta={"format": "onnx"})
    assert families.picture_input(onnx) == picture_input([1, 28, 28], None) is not None
    table = Model(framework="onnx", input={"shape": [4], "dtype": "float32"}, meta={"format": "onnx"})
    assert families.picture_input(table) is None  # not pictures
    # Predictors that offer no upload, and a framework no family serves.
    for framework in ("sklearn", "pytorch", "no-such-framework"):
        assert families.picture_input(Model(framework=framework, input={"shape": [28, 28, 1]}, meta={})) is None


def test_a_gpu_job_that_asked_for_nothing_holds_its_familys_default(settings):
    settings = dataclasses.replace(settings, gpu_memory_network_mb=1500, gpu_memory_code_mb=5000)
    assert families.default_gpu_memory_mb("network", settings) == 1500
    assert families.default_gpu_memory_mb("code", settings) == 5000
    # A family without GPU jobs, or one gone from the registry: the largest default there is.
    assert families.default_gpu_memory_mb("classic", settings) == 5000
    assert families.default_gpu_memory_mb("gone", settings) == 5000
    assert gpu_packing.need_mb(Job(family="code", gpu_memory_mb=None), settings) == 5000
    assert gpu_packing.need_mb(Job(family="network", gpu_memory_mb=None), settings) == 1500
    assert gpu_packing.need_mb(Job(family="network", gpu_memory_mb=700), settings) == 700


def test_the_openapi_examples_are_the_families_own(client, alice):
    document = client.get("/api/v1/openapi.json", headers=alice).get_json()
    examples = document["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert examples == {f.name: {"value": f.example} for f in families.submittable() if f.example is not None}


def test_a_device_goes_to_its_queue_by_one_rule(db):
    with db.session() as session:
        assert [queue_for(session, device) for device in ("cpu", "auto", "gpu")] == ["cpu", "cpu", "gpu"]
    heartbeat(db, "gpu0@lab", queue="gpu", gpu_memory_mb=16_000)
    with db.session() as session:
        assert [queue_for(session, device) for device in ("cpu", "auto", "gpu")] == ["cpu", "gpu", "gpu"]
