"""LABTRAIN_QUEUES read and checked, and what a job's submission says to SLURM (options, script,
environment): pure logic, no cluster."""

from __future__ import annotations

import dataclasses
import json
import shlex

import pytest

from service.slurm import queues, script
from service.slurm.queues import Limits, SlurmQueue

pytestmark = pytest.mark.fast

CPU = {"backend": "slurm", "partition": "batch"}


def test_unset_or_empty_leaves_every_queue_on_celery():
    assert queues.load(None) == {} and queues.load("  ") == {}
    assert queues.load(json.dumps({"gpu": {"backend": "celery"}})) == {}


def test_a_full_entry_is_read(tmp_path):
    raw = {
        "cpu": {
            **CPU,
            "depth": 3,
            "qos": {"debug": "short", "batch": "normal"},
            "accounts": {"ML 101": "ml101"},
            "default_account": "lab",
            "max": {"cpus": 8, "memory_mb": 16000, "time_limit_s": 7200},
            "environment": {"LABTRAIN_DATA_DIR": "/shared/datasets"},
            "command": ["/opt/labtrain/bin/labtrain"],
        },
        "gpu": {"backend": "slurm", "partition": "gpu", "gpu": "shard", "shard_mb": 2048},
    }
    read = queues.load(json.dumps(raw))
    cpu = read["cpu"]
    assert (cpu.partition, cpu.depth, cpu.max) == ("batch", 3, Limits(8, 16000, 7200))
    assert cpu.account_for("ML 101") == "ml101" and cpu.account_for("Other") == "lab" and cpu.account_for(None) == "lab"
    assert read["gpu"].shards(5000) == 3 and read["gpu"].worker_name == "slurm:gpu"
    # The same as a YAML file's path.
    path = tmp_path / "queues.yaml"
    path.write_text("cpu:\n  backend: slurm\n  partition: batch\n  depth: 3\n")
    assert queues.load(str(path))["cpu"].depth == 3


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ("{not json", "not valid JSON"),
        ("/no/such/file.yaml", "does not exist"),
        (json.dumps(["cpu"]), "must map queue names"),
        (json.dumps({"cpu": {"backend": "pbs"}}), "LABTRAIN_QUEUES.cpu.backend"),
        (json.dumps({"Big": CPU}), "LABTRAIN_QUEUES.Big"),
        (json.dumps({"a100": {**CPU, "device": "tpu"}}), "LABTRAIN_QUEUES.a100.device"),
        (json.dumps({"gpu": {**CPU, "device": "cpu"}}), "LABTRAIN_QUEUES.gpu.device"),
        (json.dumps({"a100": {**CPU, "max_running": -1}}), "LABTRAIN_QUEUES.a100.max_running"),
        (json.dumps({"cpu": {"backend": "slurm"}}), "LABTRAIN_QUEUES.cpu.partition"),
        (json.dumps({"cpu": {**CPU, "partition": "--wrap=x"}}), "LABTRAIN_QUEUES.cpu.partition"),
        (json.dumps({"cpu": {**CPU, "depth": 0}}), "LABTRAIN_QUEUES.cpu.depth"),
        (json.dumps({"cpu": {**CPU, "depth": True}}), "LABTRAIN_QUEUES.cpu.depth"),
        (json.dumps({"cpu": {**CPU, "qos": {"urgent": "x"}}}), "LABTRAIN_QUEUES.cpu.qos"),
        (json.dumps({"cpu": {**CPU, "accounts": {"ML": "a b"}}}), "LABTRAIN_QUEUES.cpu.accounts"),
        (json.dumps({"cpu": {**CPU, "max": {"gpus": 2}}}), "LABTRAIN_QUEUES.cpu.max"),
        (json.dumps({"cpu": {**CPU, "max": {"cpus": -1}}}), "LABTRAIN_QUEUES.cpu.max.cpus"),
        (json.dumps({"cpu": {**CPU, "partitoin": "x"}}), "unknown key 'partitoin'"),
        (json.dumps({"cpu": {**CPU, "environment": {"bad name": "x"}}}), "LABTRAIN_QUEUES.cpu.environment"),
        (json.dumps({"cpu": {**CPU, "command": "labtrain"}}), "LABTRAIN_QUEUES.cpu.command"),
        (json.dumps({"cpu": {**CPU, "gpu": "mig"}}), "LABTRAIN_QUEUES.cpu.gpu"),
        (json.dumps({"cpu": {**CPU, "poll_s": 0}}), "LABTRAIN_QUEUES.cpu.poll_s"),
        (json.dumps({"cpu": {**CPU, "jobs_per_allocation": 0}}), "LABTRAIN_QUEUES.cpu.jobs_per_allocation"),
        (json.dumps({"cpu": {**CPU, "allocation_wait_s": 600}}), "LABTRAIN_QUEUES.cpu.allocation_wait_s"),
        (json.dumps({"cpu": {**CPU, "allocation_reuse_s": -1}}), "LABTRAIN_QUEUES.cpu.allocation_reuse_s"),
        (json.dumps({"cpu": {"backend": "celery", "depth": 2}}), "a celery queue takes no other keys"),
        (json.dumps({"cpu": CPU, "gpu": CPU}), "same partition"),
    ],
)
def test_each_mistake_is_an_error_naming_its_key(raw, names):
    with pytest.raises(ValueError, match=names.replace("(", r"\(").replace(".", r"\.")):
        queues.load(raw)


def test_a_named_queue_is_read_with_its_device_and_a_gpu_one_asks_for_a_gres(settings):
    raw = {
        "a100": {"backend": "slurm", "partition": "gpu-a100", "device": "gpu", "max": {"cpus": 4}},
        "short": {"backend": "slurm", "partition": "short"},
        "bigmem": {"backend": "celery"},
    }
    read = queues.load(json.dumps(raw))
    assert list(read) == ["a100", "short"]  # bigmem is Celery's
    a100, short = read["a100"], read["short"]
    assert (a100.device, a100.max, a100.worker_name) == ("gpu", Limits(cpus=4), "slurm:gpu-a100")
    assert "--gres=gpu:1" in _options(a100, settings, gpu_memory_mb=3000)
    assert short.device == "cpu" and not any(o.startswith("--gres") for o in _options(short, settings))


def test_a_dispatcher_refuses_to_start_on_a_bad_map(settings):
    import dataclasses

    from service.core.broker import make_celery
    from service.dispatcher import Dispatcher

    bad = dataclasses.replace(settings, queues=json.dumps({"cpu": {"backend": "slurm"}}))
    with pytest.raises(ValueError, match="LABTRAIN_QUEUES.cpu.partition"):
        Dispatcher(bad, make_celery(settings))
    assert Dispatcher(settings, make_celery(settings)).slurm is None  # unset: Celery alone


def _options(queue: SlurmQueue, settings, **job) -> list[str]:
    fields = {
        "job_id": "abc123",
        "spec": {},
        "tier": "batch",
        "job_time_limit_s": 3600,
        "gpu_memory_mb": None,
        "course_name": None,
        "queue": queue,
        "settings": settings,
    }
    return script.sbatch_options(**{**fields, **job})


def test_a_jobs_resources_account_tier_and_time_become_sbatch_options(settings):
    queue = SlurmQueue(
        queue="cpu",
        partition="batch",
        qos={"debug": "short"},
        accounts={"ML 101": "ml101"},
        max=Limits(cpus=4, memory_mb=8000, time_limit_s=7200),
    )
    spec = {"resources": {"cpus": 16, "memory_mb": 3000}}
    options = _options(queue, settings, spec=spec, tier="debug", course_name="ML 101", job_time_limit_s=600)
    assert "--cpus-per-task=4" in options and "--mem=3000M" in options  # 16 CPUs asked, 4 the most
    assert "--account=ml101" in options and "--qos=short" in options
    assert "--time=12" in options  # 600 s, 30 s of stop grace and a minute's margin, in whole minutes
    assert "--job-name=labtrain-abc123" in options and "--partition=batch" in options
    assert "--no-requeue" in options and "--signal=B:USR1@60" in options
    assert any(o.startswith("--output=") and o.endswith("/jobs/abc123/slurm-%j.out") for o in options)
    batch = _options(queue, settings, job_time_limit_s=86400)
    assert "--time=120" in batch and "--cpus-per-task=1" in batch and "--mem=2048M" in batch
    assert not any(o.startswith(("--qos", "--account", "--gres")) for o in batch)


def test_an_allocation_asks_time_for_the_jobs_after_its_first_within_the_queues_largest(settings):
    shared = SlurmQueue(queue="cpu", partition="batch", jobs_per_allocation=8, allocation_reuse_s=900)
    assert "--time=27" in _options(shared, settings, job_time_limit_s=600)  # 11.5 min, and 15 for the next jobs
    capped = dataclasses.replace(shared, max=Limits(time_limit_s=1200))
    assert "--time=20" in _options(capped, settings, job_time_limit_s=600)
    one = _options(dataclasses.replace(shared, jobs_per_allocation=1), settings, job_time_limit_s=600)
    assert "--time=12" in one


def test_a_gpu_job_asks_for_a_gpu_or_for_shards_of_its_memory(settings):
    whole = SlurmQueue(queue="gpu", partition="gpu")
    assert "--gres=gpu:1" in _options(whole, settings, gpu_memory_mb=3000)
    shards = SlurmQueue(queue="gpu", partition="gpu", gpu="shard", shard_mb=1024)
    assert "--gres=shard:3" in _options(shards, settings, gpu_memory_mb=3000)


def test_the_script_runs_run_one_and_the_environment_carries_the_settings(settings):
    queue = SlurmQueue(
        queue="cpu",
        partition="batch",
        command=("/opt/lab train/bin/labtrain",),
        environment={"LABTRAIN_DATA_DIR": "/shared/data"},
    )
    text = script.batch_script(queue, "abc123", 180)
    assert text.startswith("#!/bin/sh\n")
    words = shlex.split(text.splitlines()[1])
    assert words[:5] == ["exec", "/opt/lab train/bin/labtrain", "worker", "run-one", "abc123"]
    assert words[5:] == ["--worker-name", "slurm:batch", "--ends-after-s", "180", "--signal-grace-s", "60"]
    assert settings.database_url not in text  # the URL (and its password) travels in the environment
    env = script.job_environment(
        settings, queue, {"LABTRAIN_STOP_GRACE_S": "5", "LABTRAIN_QUEUES": "{}", "SECRET_OTHER": "x"}
    )
    assert env["LABTRAIN_DATABASE_URL"] == settings.database_url and env["LABTRAIN_STOP_GRACE_S"] == "5"
    assert env["LABTRAIN_DATA_DIR"] == "/shared/data" and "LABTRAIN_QUEUES" not in env and "SECRET_OTHER" not in env
