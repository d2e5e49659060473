"""Students' scripts as jobs, end to end on real processes (PostgreSQL, Redis, a dispatcher,
two workers, the API): the course's PyTorch and Keras scripts report their epochs as events
with the values they print, `labtrain run` follows them and downloads their outputs, a
worker SIGKILLed mid-job takes its sandbox with it and the job resumes on the other, and a
search over a script's --lr finishes on the value its best trial reported."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from service.core.db import Database
from service.core.orm import Job
from tests.support.labs import SCRIPTS, LabSetup, host_processes_with
from tests.support.processes import ServiceProcess

FAST_RECOVERY = {"LABTRAIN_JOB_HEARTBEAT_TIMEOUT_S": "3", "LABTRAIN_RESEND_AFTER_S": "3"}


LAB = LabSetup(
    "code-lab",
    workers=(
        ["--queues", "cpu", "--concurrency", "1", "--name", "w1"],
        ["--queues", "cpu", "--concurrency", "1", "--name", "w2"],
    ),
    env={"LABTRAIN_CODE_MEMORY_MB": "3000", **FAST_RECOVERY},
)


def printed_epochs(log: str) -> list[dict]:
    """The epochs a script printed as `epoch N name value name value ...`."""
    found = []
    for match in re.finditer(r"^.*?\bepoch (\d+) ((?:\S+ \S+ ?)+)$", log, flags=re.M):
        words = match.group(2).split()
        found.append({"epoch": int(match.group(1)), **{k: float(v) for k, v in zip(words[::2], words[1::2])}})
    return found


def test_the_pytorch_script_reports_what_it_prints_and_labtrain_run_downloads_its_model(lab, tmp_path):
    env = {**os.environ, "LABTRAIN_URL": lab.url, "LABTRAIN_TOKEN": lab.token}
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "service",
            "run",
            str(SCRIPTS / "torch_mnist.py"),
            "--dataset",
            "mnist",
            "--download",
            str(tmp_path / "got"),
            "--",
            "--epochs",
            "2",
            "--limit",
            "2000",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    job_id = re.search(r"job (\w+) submitted", ran.stderr).group(1)
    assert "succeeded" in ran.stdout and "val_accuracy" in ran.stdout  # the final metrics
    assert (tmp_path / "got" / "model.pt").stat().st_size > 1_000_000  # 784*512 + 512*10 floats

    reported = lab.epochs(job_id)
    printed = printed_epochs(lab.log(job_id))
    assert [e["epoch"] for e in reported] == [1, 2] and len(printed) == 2
    for mine, theirs in zip(reported, printed, strict=True):
        assert {k: mine[k] for k in ("epoch", "loss", "accuracy", "val_accuracy")} == theirs
    job = lab.client.get(f"/api/v1/jobs/{job_id}").json()
    assert job["metrics"]["val_accuracy"] == reported[-1]["val_accuracy"] > 0.85
    assert job["result"]["exit_code"] == 0 and job["result"]["artifacts"] == 1
    assert job["progress"]["fraction"] == 1.0


def test_the_keras_quickstart_reports_each_epoch_through_its_callback(lab):
    job_id = lab.submit({"code": {"source": lab.source("keras_quickstart.py")}, "dataset": "mnist"})
    job = lab.client.wait_for(job_id, timeout=300)
    assert job["status"] == "succeeded", (job["error"], lab.log(job_id)[-3000:])
    reported, printed = lab.epochs(job_id), printed_epochs(lab.log(job_id))
    assert [e["epoch"] for e in reported] == [1, 2, 3] and len(printed) == 3
    for mine, theirs in zip(reported, printed, strict=True):
        assert {"loss": mine["loss"], "accuracy": mine["accuracy"]} == {
            "loss": theirs["loss"],
            "accuracy": theirs["accuracy"],
        }
    assert job["metrics"]["test_accuracy"] > 0.85
    assert [a["path"] for a in lab.client.get(f"/api/v1/jobs/{job_id}/artifacts").json()["items"]] == [
        "quickstart.keras"
    ]
    assert job["result"]["dataset"] == "mnist (subset: 6,000 training and 2,000 test digits)"  # the packaged one


def test_what_a_script_writes_to_outputs_is_listed_and_served_as_artifacts(lab):
    script = (
        b"import os, pathlib, labtrain_job\n"
        b"pathlib.Path('outputs/report.txt').write_text('written as tutorials do')\n"
        b"(labtrain_job.outputs_dir() / 'helper.txt').write_text('written by the helper')\n"
        b"os.symlink('/etc/hostname', 'outputs/host_file')  # a link out: left behind\n"
    )
    job = lab.client.wait_for(lab.submit({"code": {"source": lab.upload("outputs.py", script)}}), timeout=240)
    assert job["status"] == "succeeded", (job["error"], lab.log(job["id"])[-2000:])
    listed = lab.client.get(f"/api/v1/jobs/{job['id']}/artifacts").json()["items"]
    assert [a["path"] for a in listed] == ["helper.txt", "report.txt"]
    served = lab.client.get(f"/api/v1/jobs/{job['id']}/artifacts/report.txt")
    assert served.status_code == 200 and served.text == "written as tutorials do"
    assert lab.client.get(f"/api/v1/jobs/{job['id']}/artifacts/host_file").status_code == 404


def test_a_killed_worker_takes_its_sandbox_along_and_the_job_resumes_on_the_other(lab):
    job_id = lab.submit(
        {
            "code": {
                "source": lab.source("torch_mnist.py"),
                "args": ["--epochs", "5", "--limit", "1500", "--sleep", "1"],
            },
            "dataset": "mnist",
        }
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(lab.epochs(job_id)) < 2:
        time.sleep(0.2)
    with Database(lab.env["LABTRAIN_DATABASE_URL"]).session() as session:
        worker = session.scalar(select(Job.worker).where(Job.id == job_id))
    victim = next(p for p in lab.processes if p.proc.args[-1] == worker)
    os.killpg(victim.proc.pid, signal.SIGKILL)  # the worker and its pool, as an OOM kill or a power loss would
    victim.proc.wait()
    time.sleep(0.5)
    assert host_processes_with("torch_mnist.py") == []  # the sandbox went with its worker

    job = lab.client.wait_for(job_id, timeout=180)
    assert job["status"] == "succeeded", (job["error"], lab.log(job_id)[-2000:])
    assert [e["epoch"] for e in lab.epochs(job_id)] == [1, 2, 3, 4, 5]  # each epoch reported once
    attempts = [
        e["data"]["attempt"] for e in lab.events(job_id) if e["type"] == "status" and e["data"]["status"] == "running"
    ]
    assert attempts == [1, 2]
    assert re.search(r"resumed after epoch [2-5]", lab.log(job_id))
    lab.processes.append(
        ServiceProcess(
            ["worker", "--queues", "cpu", "--concurrency", "1", "--name", f"{worker}-2"],
            lab.env,
            lab.home / f"worker-{worker}-2.log",
        )
    )


@pytest.mark.parametrize("strategy", ["tpe", "ga"])
def test_a_search_over_a_scripts_lr_finishes_on_what_its_best_trial_reported(lab, strategy):
    spec = {
        "code": {"source": lab.source("torch_mnist.py"), "args": ["--lr", "{lr}", "--epochs", "1", "--limit", "1000"]},
        "dataset": "mnist",
        "search": {
            "strategy": strategy,
            "trials": 3,
            "parallel": 2,
            "metric": "val_accuracy",
            "seed": 1,
            "params": {"population": 4} if strategy == "ga" else {},
            "space": {"lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True}},
        },
    }
    search_id = lab.submit(spec)
    search = lab.client.wait_for(search_id, timeout=300)
    assert search["status"] == "succeeded", search["error"]
    best = search["result"]["best_trial"]
    best_reported = lab.epochs(best)[-1]["val_accuracy"]
    assert search["result"]["best_value"] == best_reported
    trials = search["result"]["trials"]
    assert len(trials) == 3 and all(t["status"] == "succeeded" for t in trials)
    child = lab.client.get(f"/api/v1/jobs/{best}").json()
    assert (
        child["spec"]["code"]["args"][1] == repr(search["result"]["best_params"]["lr"])
        or float(child["spec"]["code"]["args"][1]) == search["result"]["best_params"]["lr"]
    )
