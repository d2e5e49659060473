"""`labtrain tensorboard`: a code job's TensorBoard event files, read into its curves by the
worker, downloaded one folder per job through the artifacts routes; the command printed, or a
real TensorBoard started on them that answers HTTP. A deployment (PostgreSQL, Redis, a
sandboxing worker, the API) and the installed `labtrain` script, as a user runs it."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port
from tests.support.labs import CodeLab, LabSetup

LAB = LabSetup("tensorboard-lab")
LABTRAIN = Path(sys.executable).parent / "labtrain"

WRITER = b"""
import os
from torch.utils.tensorboard import SummaryWriter

writer = SummaryWriter(os.environ["LABTRAIN_TENSORBOARD_DIR"])
for step in range(3):
    writer.add_scalar("loss", 1.0 / (step + 1), step)
writer.close()
"""


def user_env(lab: CodeLab, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABTRAIN_")}
    return {**env, "HOME": str(home), "LABTRAIN_URL": lab.url, "LABTRAIN_TOKEN": lab.token}


def labtrain(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    ran = subprocess.run([str(LABTRAIN), *args], env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in ran.stderr, ran.stderr
    return ran


@pytest.fixture(scope="module")
def jobs(lab: CodeLab) -> dict[str, str]:
    """A job that wrote event files (named `writer`) and one that wrote none."""
    writer = lab.submit({"code": {"source": lab.upload("writer.py", WRITER)}, "name": "writer"})
    quiet = lab.submit({"code": {"source": lab.upload("quiet.py", b"print('no logs')\n")}, "name": "quiet"})
    for job_id in (writer, quiet):
        job = lab.client.wait_for(job_id, timeout=180)
        assert job["status"] == "succeeded", job
    return {"writer": writer, "quiet": quiet}


def test_the_jobs_scalars_are_its_metrics_events_and_its_metrics(lab, jobs):
    metrics = [e["data"] for e in lab.events(jobs["writer"]) if e["type"] == "metrics"]
    assert [(m["step"], m["loss"]) for m in metrics] == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    assert {m["source"] for m in metrics} == {"tensorboard"}
    job = lab.client.get(f"/api/v1/jobs/{jobs['writer']}").json()
    assert job["metrics"]["loss"] == pytest.approx(1 / 3)


def test_the_event_files_are_downloaded_one_folder_per_job_and_the_command_printed(lab, jobs, tmp_path):
    folder = tmp_path / "tb"
    ran = labtrain(
        ["tensorboard", jobs["writer"], jobs["quiet"], "--dir", str(folder), "--no-start"], user_env(lab, tmp_path)
    )
    assert ran.returncode == 0, ran.stderr
    downloaded = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert len(downloaded) == 1 and downloaded[0].startswith("writer/tensorboard/events.out.tfevents.")
    assert (folder / downloaded[0]).read_bytes() == lab.client.get(
        f"/api/v1/jobs/{jobs['writer']}/artifacts/{downloaded[0].removeprefix('writer/')}"
    ).content
    command = shlex.split(ran.stdout.strip())
    assert command[-2:] == ["--logdir", str(folder)] and "tensorboard" in " ".join(command[:-2])
    assert f"job {jobs['quiet']} has no TensorBoard event files" in ran.stderr


def test_no_job_with_event_files_exits_non_zero(lab, jobs, tmp_path):
    ran = labtrain(["tensorboard", jobs["quiet"], "--no-start"], user_env(lab, tmp_path))
    assert ran.returncode != 0
    assert "none of these jobs has TensorBoard event files" in ran.stderr


def test_it_starts_a_tensorboard_that_answers(lab, jobs, tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [str(LABTRAIN), "tensorboard", jobs["writer"], "--dir", str(tmp_path / "tb"), "--port", str(port)],
        env=user_env(lab, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()  # printed once TensorBoard answers
        assert f"http://127.0.0.1:{port}/" in line, (line, process.stderr.read() if process.poll() is not None else "")
        runs = requests.get(f"http://127.0.0.1:{port}/data/runs", timeout=10)
        deadline = time.monotonic() + 60
        while runs.json() == [] and time.monotonic() < deadline:  # TensorBoard loads the folder in the background
            time.sleep(0.5)
            runs = requests.get(f"http://127.0.0.1:{port}/data/runs", timeout=10)
        assert runs.json() == ["writer/tensorboard"]
    finally:
        process.terminate()
        process.wait(timeout=30)
