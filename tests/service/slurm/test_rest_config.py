"""LABTRAIN_SLURMRESTD read at the dispatcher's start: every mistake names its key; and what the
client sends slurmrestd for sbatch's options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.core.config import Settings
from service.slurm import rest, rest_config
from service.slurm.commands import Slurm, SlurmError

pytestmark = pytest.mark.fast


@pytest.fixture
def token_file(tmp_path) -> str:
    path = tmp_path / "labtrain.jwt"
    path.write_text("SLURM_JWT=eyJ...")
    return str(path)


def test_a_tcp_url_with_a_token_file_and_a_socket_alone_are_read(token_file, tmp_path):
    config = rest_config.load(
        json.dumps({"url": "http://slurm:6820/", "user": "labtrain", "token_file": token_file}), {}
    )
    assert config.url == "http://slurm:6820" and config.user == "labtrain" and config.token_file == Path(token_file)
    yaml_file = tmp_path / "slurmrestd.yaml"
    yaml_file.write_text("url: unix:/run/slurmrestd.socket\n")
    config = rest_config.load(str(yaml_file), {})
    assert config.socket == "/run/slurmrestd.socket" and not config.uses_token


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"url": "slurm:6820", "user": "u", "token_env": "T"}, "LABTRAIN_SLURMRESTD.url"),
        ({"url": "http://slurm:6820"}, "LABTRAIN_SLURMRESTD.user: over TCP slurmrestd takes a JWT"),
        ({"url": "http://slurm:6820", "user": "u"}, "LABTRAIN_SLURMRESTD.token_file"),
        ({"url": "unix:/run/s.socket", "token_env": "T"}, "LABTRAIN_SLURMRESTD.user"),
        ({"url": "http://slurm:6820", "user": "u", "token_file": "/nowhere/labtrain.jwt"}, "token_file"),
        ({"url": "http://slurm:6820", "user": "u", "token_env": "UNSET_TOKEN"}, "token_env: UNSET_TOKEN is not set"),
        ({"url": "http://slurm:6820", "user": "u", "token_env": "T", "tokens": 1}, "unknown key 'tokens'"),
    ],
)
def test_each_mistake_names_its_key(entry, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        rest_config.load(json.dumps(entry), {"T": "eyJ..."})


def test_without_the_setting_the_dispatcher_runs_slurms_commands(settings: Settings):
    assert isinstance(rest.client(settings, timeout_s=5), Slurm)


def test_sbatchs_options_become_the_jobs_properties_and_an_unknown_one_is_an_error():
    options = [
        "--job-name=labtrain-1",
        "--partition=batch",
        "--nodes=1",
        "--ntasks=1",
        "--cpus-per-task=2",
        "--mem=2048M",
        "--no-requeue",
        "--output=/shared/jobs/1/slurm-%j.out",
        "--export=ALL",
        "--time=62",
        "--gres=gpu:1",
        "--account=ml101",
        "--qos=short",
    ]
    assert rest._properties(options) == {
        "name": "labtrain-1",
        "partition": "batch",
        "nodes": "1",
        "tasks": 1,
        "cpus_per_task": 2,
        "memory_per_node": 2048,
        "no_requeue": True,
        "standard_output": "/shared/jobs/1/slurm-%j.out",
        "time_limit": 62,
        "gres": "gpu:1",
        "account": "ml101",
        "qos": "short",
    }
    with pytest.raises(SlurmError, match="--exclusive"):
        rest._properties(["--exclusive"])
