"""Hostile model files left by a code job, end to end on real processes (PostgreSQL, Redis, a
dispatcher, a worker with its sandbox, the API): a .skops file whose names would have numpy
write a pickle and unpickle it, and an ONNX file whose sparse initializer names a file beside
the loader. The worker refuses each before building anything, the job fails saying why, no
file appears on the host, and the worker runs the next job."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.support.labs import CodeLab as Lab
from tests.support.labs import LabSetup

LAB = LabSetup("attack-lab")


def failed_export(lab: Lab, script: str, args: list[str]) -> dict:
    job = lab.client.wait_for(lab.submit({"code": {"source": lab.source(script), "args": args}}), timeout=240)
    assert job["status"] == "failed" and job["error"]["code"] == "model_export_failed", (job, lab.log(job["id"]))
    assert "saved" in lab.log(job["id"])  # the script did write its file
    assert lab.client.get(f"/api/v1/models/{job['id']}").status_code == 409  # no model
    return job


def the_next_job_succeeds(lab: Lab) -> None:
    created = lab.client.post("/api/v1/sources", files={"file": ("plain.py", b"print('next')\n")})
    job = lab.client.wait_for(lab.submit({"code": {"source": created.json()["id"]}}), timeout=240)
    assert job["status"] == "succeeded", job["error"]


def test_a_skops_file_calling_numpy_is_refused_and_runs_nothing_on_the_host(lab):
    word = f"labtrain-attack-{uuid.uuid4().hex}"
    prefix = Path("/tmp") / word
    job = failed_export(lab, "hostile_skops.py", [str(prefix)])
    message = job["error"]["message"]
    assert "numpy.load" in message and "numpy.savetxt" in message, message
    assert not Path(f"{prefix}.pkl").exists() and not Path(f"{prefix}-code-ran").exists()
    assert list(Path("/tmp").glob(f"*{word}*")) == [] and list(lab.home.rglob(f"*{word}*")) == []
    the_next_job_succeeds(lab)


def test_an_onnx_file_reading_a_file_beside_its_loader_is_refused(lab):
    job = failed_export(lab, "hostile_models.py", ["file_read"])
    assert "'W'" in job["error"]["message"] and "external data" in job["error"]["message"], job["error"]
    the_next_job_succeeds(lab)
