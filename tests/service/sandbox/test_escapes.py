"""Escape attempts, each a real job in a real sandbox on a real worker (PostgreSQL, Redis, a
dispatcher, one worker, the API): each is contained, its job ends with a clear status, the
next job on the same worker succeeds, and none of the service's data is within reach."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

import service
from service.core.db import Database
from service.core.orm import Worker
from tests.support.labs import ATTACKED_LAB, BACKENDS, host_processes_with

LAB = ATTACKED_LAB
# Every attack runs where the cpu queue is served by Celery workers. Where it is a SLURM partition
# the sandbox is the same one, made by `run-one` inside SLURM's job on the node: there one attack
# of each kind runs (network, the service's files, a process left behind, memory) and what
# SLURM's job changes (the job's environment), each SLURM job costing seconds to start.
# LABTRAIN_ESCAPES_ON_SLURM=all runs every attack on SLURM too (minutes more: before a release,
# or after a change to run-one or the SLURM backend).
EVERY_BACKEND = pytest.mark.parametrize("lab", BACKENDS, indirect=True, scope="module")
CELERY_ONLY = (
    EVERY_BACKEND
    if os.environ.get("LABTRAIN_ESCAPES_ON_SLURM") == "all"
    else pytest.mark.parametrize("lab", ["celery"], indirect=True, scope="module")
)


@EVERY_BACKEND
def test_no_network_reaches_anything(lab):
    job = lab.job("net", "5432", "6379", str(lab.port))
    assert job["status"] == "succeeded", job["error"]
    seen = lab.result(job)
    assert "connected" not in seen.values() and seen["dns"] == "failed", seen
    lab.next_job_succeeds()


@EVERY_BACKEND
def test_the_services_files_are_out_of_reach(lab):
    other = lab.job("ok")
    with Database(lab.env["LABTRAIN_DATABASE_URL"]).session() as session:
        worker_pid = session.scalar(select(Worker.pid))
    artifacts = lab.home / "artifacts"
    targets = [
        str(lab.home / "token"),
        str(lab.home / "labtrain.db"),
        str(artifacts / "jobs" / other["id"] / "job.log"),
        str(artifacts / "sources"),
        f"/proc/{worker_pid}/environ",
        "/proc/1/environ",
        "/etc/shadow",
        "/etc/passwd",
        str(Path.home() / ".bash_history"),
        str(Path(service.__file__)),
        str(Path(sys.prefix) / "pyvenv.cfg"),
    ]
    job = lab.job("read", *targets)
    assert job["status"] == "succeeded", job["error"]
    seen = lab.result(job)
    readable = {path: what for path, what in seen.items() if path != "/" and what.startswith("read")}
    assert readable == {str(Path(sys.prefix) / "pyvenv.cfg"): readable.get(str(Path(sys.prefix) / "pyvenv.cfg"))}, (
        readable
    )  # the Python environment, read-only, and nothing else
    python_roots = {Path(prefix).resolve().parts[1] for prefix in (sys.prefix, sys.base_prefix)}
    system = {"bin", "dev", "etc", "job", "lib", "lib32", "lib64", "libx32", "opt", "proc", "sbin", "tmp", "usr"}
    system.add("run")  # /run/labtrain: the job's own tracking socket (workers/tracking_socket.py)
    assert set(seen["/"]) <= system | python_roots, seen["/"]
    lab.next_job_succeeds()


@EVERY_BACKEND
def test_the_environment_is_the_jobs_alone(lab, request):
    seen = lab.result(lab.job("environ"))
    names = set(seen["environ"])
    # A worker that SLURM runs says so (SLURM's SIGTERM is a yield), and nothing else of SLURM's.
    assert ("JOB_YIELD_ON_SIGTERM" in names) == (request.node.callspec.params["lab"] == "slurm"), names
    assert not [n for n in names if n.startswith("SLURM")], names
    job_own = {"LABTRAIN_TENSORBOARD_DIR"}  # a folder of the job's: no setting of the worker's
    assert not [
        n for n in names - job_own if n.startswith("LABTRAIN_") or "DATABASE" in n or "BROKER" in n or "REDIS" in n
    ]
    assert not [value for value in seen["environ"].values() if "postgresql" in value or "redis://" in value]
    assert {"JOB_EVENTS_FD", "JOB_OUTPUTS_DIR", "JOB_CHECKPOINT_DIR"} <= names
    assert seen["uid"] == 65534 and seen["pid"] < 10  # nobody, in a PID namespace of its own


@CELERY_ONLY
def test_writes_stay_in_the_job_folder(lab):
    marker = f"escaped-{uuid.uuid4().hex}"
    targets = ["/usr/lib/" + marker, "/etc/" + marker, f"/tmp/{marker}", str(lab.home / marker), f"/job/src/{marker}"]
    job = lab.job("write", *targets)
    assert job["status"] == "succeeded", job["error"]
    seen = lab.result(job)
    assert seen["/usr/lib/" + marker] in ("OSError", "PermissionError") and seen["/etc/" + marker] != "written"
    assert seen[str(lab.home / marker)] != "written"
    assert seen[f"/tmp/{marker}"] == "written" and not Path(f"/tmp/{marker}").exists()  # a private /tmp
    assert not (lab.home / marker).exists()
    lab.next_job_succeeds()


@CELERY_ONLY
def test_a_fork_bomb_is_contained(lab):
    job = lab.job("fork")
    assert job["status"] == "succeeded", job["error"]
    seen = lab.result(job)
    assert seen["children"] < 100 and "Resource temporarily unavailable" in seen["error"], seen
    lab.next_job_succeeds()


@EVERY_BACKEND
def test_a_job_over_its_memory_is_killed_alone(lab):
    job = lab.job("memory", resources={"memory_mb": 300})
    assert job["status"] == "failed" and job["error"]["code"] == "memory_limit_exceeded", job
    assert "300 MB" in job["error"]["message"]
    lab.next_job_succeeds()


@CELERY_ONLY
def test_a_job_that_ignores_sigterm_is_killed_on_cancel(lab):
    created = lab.client.post("/api/v1/jobs", json={"code": {"source": lab.attack, "args": ["sigterm"]}}).json()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not lab.client.get(f"/api/v1/jobs/{created['id']}").json()["progress"]:
        time.sleep(0.1)
    asked = time.monotonic()
    assert lab.client.post(f"/api/v1/jobs/{created['id']}/cancel").status_code == 202
    job = lab.client.wait_for(created["id"], timeout=30)
    assert job["status"] == "cancelled" and time.monotonic() - asked < 15, job
    assert host_processes_with("attack.py sigterm") == []
    lab.next_job_succeeds()


@CELERY_ONLY
def test_a_job_past_its_time_limit_is_stopped_and_says_so(lab):
    job = lab.job("sigterm", resources={"time_limit_s": 3}, timeout=60)
    assert job["status"] == "failed" and job["error"]["code"] == "time_limit_exceeded", job
    assert host_processes_with("attack.py sigterm") == []
    lab.next_job_succeeds()


@EVERY_BACKEND
def test_no_daemon_outlives_its_job(lab):
    marker = f"daemon-{uuid.uuid4().hex}"
    job = lab.job("daemon", marker)
    assert job["status"] == "succeeded" and lab.result(job) == {"started": True}
    time.sleep(0.5)
    assert host_processes_with(marker) == []
    lab.next_job_succeeds()


@CELERY_ONLY
def test_writing_past_the_outputs_limit_fails_the_job(lab):
    job = lab.job("outputs")
    assert job["status"] == "failed" and job["error"]["code"] == "outputs_limit_exceeded", job
    listed = lab.client.get(f"/api/v1/jobs/{job['id']}/artifacts").json()["items"]
    assert all(item["size"] <= 5 * 1024 * 1024 for item in listed)
    lab.next_job_succeeds()


@CELERY_ONLY
def test_an_artifact_path_cannot_leave_the_jobs_outputs(lab):
    job = lab.job("ok")
    base = f"http://127.0.0.1:{lab.port}/api/v1/jobs/{job['id']}/artifacts/"
    for path in ("../job.log", "..%2Fjob.log", "%2e%2e/job.log", "/etc/passwd", "result.json/../../job.log"):
        answer = requests.get(base + path, headers=lab.client.session.headers, timeout=10)
        assert answer.status_code == 404, (path, answer.status_code, answer.text[:200])
    downloaded = requests.get(base + "result.json", headers=lab.client.session.headers, timeout=10)
    assert json.loads(downloaded.content) == {"ok": True}
    assert downloaded.headers["Content-Security-Policy"].startswith("sandbox")
