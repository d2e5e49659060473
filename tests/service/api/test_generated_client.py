"""A Python client generated from the OpenAPI document (openapi-python-client, as a student
or a course tool would make one) covers every body the API takes: it submits a job, polls
it and predicts with JSON instances against the API served over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.conftest import free_port


@pytest.fixture
def served(app):
    """The app behind a real HTTP server, in a thread."""
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    thread.join(timeout=10)


def generate(document: dict, folder: Path, package: str) -> str:
    (folder / "openapi.json").write_text(json.dumps(document))
    tools = Path(sys.executable).parent  # openapi-python-client formats what it writes with ruff from here
    generated = subprocess.run(
        [
            str(tools / "openapi-python-client"),
            "generate",
            "--path",
            str(folder / "openapi.json"),
            "--meta",
            "none",
            "--output-path",
            str(folder / package),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": f"{tools}:{os.environ['PATH']}"},
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    return generated.stdout


def test_a_generated_client_submits_polls_and_predicts(tmp_path, served, client, alice, run_queued):
    document = client.get("/api/v1/openapi.json", headers=alice).get_json()
    output = generate(document, tmp_path, "labtrain_generated")
    assert "Warning" not in output and "WARNING" not in output, output  # no body or endpoint was skipped

    sys.path.insert(0, str(tmp_path))
    try:
        from labtrain_generated import AuthenticatedClient
        from labtrain_generated.api.jobs import jobs_get_job_get, jobs_submit_post
        from labtrain_generated.api.models import models_predict_post
        from labtrain_generated.models import ClassicSpec, Job, ModelsPredictPostJsonBody, Prediction
    finally:
        sys.path.remove(str(tmp_path))

    api = AuthenticatedClient(base_url=served, token=alice["Authorization"].removeprefix("Bearer "))
    spec = ClassicSpec.from_dict(
        {
            "name": "from a generated client",
            "dataset": "iris",
            "algorithm": "knn",
            "params": {"n_neighbors": 5},
            "evaluation": {"cv": 3},
        }
    )
    submitted = jobs_submit_post.sync(client=api, body=spec)
    assert isinstance(submitted, Job) and submitted.status.value == "queued", submitted

    run_queued(submitted.id)  # as a worker's pool process would
    polled = jobs_get_job_get.sync(client=api, job_id=submitted.id)
    assert polled.status.value == "succeeded" and polled.metrics["accuracy"] > 0.9

    body = ModelsPredictPostJsonBody.from_dict({"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]})
    predicted = models_predict_post.sync(client=api, model_id=polled.result["model_id"], body=body)
    assert isinstance(predicted, Prediction), predicted
    assert predicted.predictions == [0, 2] and predicted.labels == ["setosa", "virginica"]
