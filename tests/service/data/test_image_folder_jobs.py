"""An image-folder data set used by jobs, end to end on real processes (PostgreSQL, Redis, a
dispatcher, a worker, the API): one layer list of a small CNN learns circles from squares
on both frameworks, well above chance on the held-out part; predict takes uploaded PNGs and
answers class names; a code job finds the folder read-only under /data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.support.labs import LabSetup
from tests.support.processes import Client
from tests.support.shape_images import SHAPES, encode, shape_files, shape_image, zipped

CNN = [
    {"type": "conv2d", "filters": 8, "kernel_size": 3, "padding": "same", "activation": "relu"},
    {"type": "maxpool2d", "pool_size": 2},
    {"type": "conv2d", "filters": 16, "kernel_size": 3, "padding": "same", "activation": "relu"},
    {"type": "maxpool2d", "pool_size": 2},
    {"type": "flatten"},
    {"type": "dense", "units": 32, "activation": "relu"},
    {"type": "dense", "units": 2},
]
# What a student's script does with an image-folder data set: list it, open an image, and
# (here) try to change it.
READER = b"""
import errno
import json
import labtrain_job
from PIL import Image

root = labtrain_job.dataset_path()
counts = {folder.name: len(list(folder.iterdir())) for folder in sorted(root.iterdir())}
with Image.open(sorted((root / "circle").iterdir())[0]) as img:
    size = list(img.size)
try:
    (root / "circle" / "mine.png").write_bytes(b"x")
    write = "written"
except OSError as exc:
    write = errno.errorcode[exc.errno]
labtrain_job.report(images=sum(counts.values()))
seen = {"path": str(root), "counts": counts, "size": size, "write": write}
(labtrain_job.outputs_dir() / "seen.json").write_text(json.dumps(seen))
"""


LAB = LabSetup("image-lab", workers=(["--queues", "cpu", "--concurrency", "1"],))


@pytest.fixture(scope="module")
def api(lab) -> Client:
    return lab.client


@pytest.fixture(scope="module")
def shapes(api) -> dict:
    archive = zipped(shape_files(per_class=100, side=16, top="shapes"))
    created = api.post("/api/v1/datasets", files={"file": ("shapes.zip", archive)})
    assert created.status_code == 201, created.text
    return created.json()


def finished(api: Client, spec: dict, timeout: float = 300) -> dict:
    created = api.post("/api/v1/jobs", json=spec)
    assert created.status_code == 201, created.text
    job = api.wait_for(created.json()["id"], timeout=timeout)
    assert job["status"] == "succeeded", (job["error"], api.get(f"/api/v1/jobs/{job['id']}/log").text[-3000:])
    return job


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow"])
def test_a_cnn_learns_circles_from_squares_and_predict_names_the_shape(api, shapes, framework):
    assert shapes["classes"] == list(SHAPES) and shapes["class_counts"] == {"circle": 100, "square": 100}
    spec = {
        "dataset": {"id": shapes["id"]},
        "framework": framework,
        "network": {"api": "sequential", "layers": CNN},
        "image": {"size": [16, 16], "color": "rgb"},
        "training": {"epochs": 10, "batch_size": 16, "learning_rate": 0.003},
        "evaluation": {"test_size": 0.25, "seed": 0},
        "device": "cpu",
    }
    job = finished(api, spec)
    assert job["metrics"]["accuracy"] >= 0.8, job["metrics"]  # chance is 0.5
    assert sum(job["metrics"]["confusion_matrix"]["matrix"][0]) == 25  # a quarter of each class held out
    model = api.get(f"/api/v1/models/{job['result']['model_id']}").json()
    assert model["classes"] == [0, 1] and model["class_names"] == list(SHAPES)
    assert model["input"]["shape"] == [16, 16, 3] and model["input"]["resize"] == {"size": [16, 16], "color": "rgb"}

    # New drawings, twice the training size (predict resizes them as training did).
    rng = np.random.default_rng(7)
    truth = [SHAPES[i % 2] for i in range(20)]
    files = [("file", (f"{i}.png", encode(shape_image(shape, rng, side=32)))) for i, shape in enumerate(truth)]
    answer = api.post(f"/api/v1/models/{model['id']}/predict", files=files)
    assert answer.status_code == 200, answer.text
    labels = answer.json()["labels"]
    assert set(labels) <= set(SHAPES) and np.mean(np.array(labels) == np.array(truth)) >= 0.8, labels


def test_a_code_job_reads_the_folder_read_only_under_data(api, shapes):
    source = api.post("/api/v1/sources", files={"file": ("read_images.py", READER)})
    assert source.status_code == 201, source.text
    job = finished(api, {"code": {"source": source.json()["id"]}, "dataset": {"id": shapes["id"]}}, timeout=120)
    assert job["metrics"]["images"] == 200
    seen = json.loads(api.get(f"/api/v1/jobs/{job['id']}/artifacts/seen.json").content)
    assert seen == {
        "path": f"/data/{shapes['id']}",
        "counts": {"circle": 100, "square": 100},
        "size": [16, 16],
        "write": "EROFS",  # a read-only mount, whoever the job runs as
    }
