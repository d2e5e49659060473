"""Notebooks as jobs and models from students' code, end to end on real processes (PostgreSQL,
Redis, a dispatcher, a worker with its sandbox, the API).

A notebook runs cell by cell and comes back executed, and its page is rendered by the worker
from the executed notebook (a page the job writes itself stays an artifact); a failing cell, a
`!pip install` of something absent and `google.colab` each fail the job with a message that
says what to do; a search varies a notebook's parameter. A model saved with
`labtrain_job.save_model` answers predict through ONNX (PyTorch, Keras) or skops
(scikit-learn) with the framework's own outputs, and the API never imports the student's
module to do it.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import onnx
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tests.support.digit_images import encode, load_mnist_8k, picture
from tests.support.labs import CodeLab as Lab
from tests.support.labs import LabSetup

MODELS = Path(__file__).with_name("models")
MARKER = "labtrain-student-module-imported"
HOSTILE_HTML = (
    "<script>document.title = 'script ran'; fetch('http://127.0.0.1:{port}/from-a-script')</script>"
    "<b id='bold'>bold</b><img src='http://127.0.0.1:{port}/image.png' onerror=\"document.title='handler ran'\">"
    "<iframe src='http://127.0.0.1:{port}/frame'></iframe>"
)


LAB = LabSetup(
    "notebook-lab",
    workers=(["--queues", "cpu", "--concurrency", "2", "--name", "w1"],),
    env={"LABTRAIN_CODE_MEMORY_MB": "3000"},
)


def notebook(*cells) -> bytes:
    book = new_notebook(cells=list(cells))
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nbformat.writes(book).encode()


def notebook_page(lab: Lab, job_id: str) -> str:
    response = lab.client.get(f"/api/v1/jobs/{job_id}/notebook")
    assert response.status_code == 200, response.text[:300]
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"].startswith("sandbox; default-src 'none'")
    return response.text


def run_job(lab: Lab, spec: dict, timeout: float = 240) -> dict:
    return lab.client.wait_for(lab.submit(spec), timeout=timeout)


def artifact(lab: Lab, job_id: str, path: str) -> bytes:
    response = lab.client.get(f"/api/v1/jobs/{job_id}/artifacts/{path}")
    assert response.status_code == 200, (path, response.text[:300])
    return response.content


PARAMETERS = new_code_cell("epochs = 1\nrate = 0.5", metadata={"tags": ["parameters"]})
TRAINING = new_code_cell(
    "import labtrain_job\n"
    "for epoch in range(1, epochs + 1):\n"
    "    labtrain_job.report(epoch=epoch, loss=rate / epoch)\n"
    "print('trained', epochs, 'epochs at rate', rate)"
)


# --- notebooks ------------------------------------------------------------------------------


def test_a_notebook_runs_cell_by_cell_and_comes_back_executed_and_rendered(lab):
    source = lab.upload(
        "train.ipynb",
        notebook(
            new_markdown_cell("# Training\nA *small* notebook."),
            PARAMETERS,
            TRAINING,
            new_code_cell("import matplotlib.pyplot as plt\nplt.plot([3, 1, 2])\nplt.title('curve')\nplt.show()"),
            new_code_cell(
                f"from IPython.display import HTML, display\ndisplay(HTML({HOSTILE_HTML.format(port=lab.port)!r}))"
            ),
        ),
    )
    job = run_job(lab, {"code": {"source": source, "parameters": {"epochs": 3, "rate": 0.25}}})
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["notebook"] == {"executed": "train.ipynb", "cells": 5, "page": True}
    assert job["progress"]["cells"] == 5

    messages = [e["data"]["message"] for e in lab.events(job["id"]) if e["type"] == "log" and "cell" in e["data"]]
    assert messages == [
        "cell 1/5: epochs = 1",
        "cell 2/5: # Parameters given to this job",
        "cell 3/5: import labtrain_job",
        "cell 4/5: import matplotlib.pyplot as plt",
        "cell 5/5: from IPython.display import HTML, display",
    ]
    assert [(e["epoch"], e["loss"]) for e in lab.epochs(job["id"])] == [(1, 0.25), (2, 0.125), (3, 0.25 / 3)]
    assert "trained 3 epochs at rate 0.25" in lab.log(job["id"])  # printed as the cell ran

    executed = nbformat.reads(artifact(lab, job["id"], "train.ipynb").decode(), as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert code[1].metadata["tags"] == ["injected-parameters"] and "epochs = 3" in code[1].source
    assert code[2].outputs[0]["text"] == "trained 3 epochs at rate 0.25\n"
    assert any("image/png" in output.get("data", {}) for output in code[3].outputs)  # the figure

    page = notebook_page(lab, job["id"])
    assert "<h1" in page and "<em>small</em>" in page and "data:image/png;base64," in page
    assert '<b id="bold">bold</b>' in page  # harmless markup stays
    assert "<script" not in page and "<iframe" not in page  # (the code cell shows them escaped)
    assert re.search(r"<[^>]*\son\w+\s*=", page) is None  # no event handler on any element
    assert re.search(r"""<[^>]*\ssrc\s*=\s*(?!["']?data:)""", page) is None  # nothing fetched from anywhere


FORGER = (  # keeps writing the job's own page, past the notebook's end, until the sandbox goes
    "import os, pathlib, time\n"
    "outputs = pathlib.Path('{outputs}')\n"
    "while True:\n"
    "    (outputs / 'forging').write_text({page!r})\n"
    "    os.replace(outputs / 'forging', outputs / 'forged.html')\n"
    "    with open(outputs / 'forger.log', 'a') as log:\n"
    "        print(time.time(), file=log)\n"
    "    time.sleep(0.02)\n"
)


def test_the_page_is_rendered_by_the_worker_whatever_the_job_writes_where_a_page_was(lab):
    source = lab.upload(
        "forged.ipynb",
        notebook(
            new_markdown_cell("# The real notebook"),
            new_code_cell(
                "import labtrain_job, subprocess, sys\n"
                "outputs = labtrain_job.outputs_dir()\n"
                # The marker is put together as the cell runs: its source, on the page, never holds it.
                "page = '<script>document.title = 1</script><p>' + 'FORGED' + '_PAGE' + '</p>'\n"
                "(outputs / 'forged.html').write_text(page)\n"
                f"forger = {FORGER!r}.format(outputs=outputs, page=page)\n"
                "subprocess.Popen([sys.executable, '-c', forger], start_new_session=True)"
            ),
            new_code_cell("print('printed by a ' + 'real cell')"),
            new_code_cell(
                "import time\n"
                "(outputs / 'forged.html').write_text(page)\n"
                "(outputs / 'cells-ended').write_text(str(time.time()))"
            ),
        ),
    )
    job = run_job(lab, {"code": {"source": source}})
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["notebook"] == {"executed": "forged.ipynb", "cells": 3, "page": True}

    page = notebook_page(lab, job["id"])
    assert "<h1" in page and "The real notebook" in page and "printed by a real cell" in page
    assert "FORGED_PAGE" not in page and "<script" not in page

    # The control: the job did write its page where the rendered one used to be, and kept
    # writing it after its cells ended; that file is one of its artifacts, served as a download.
    assert b"<script>" in artifact(lab, job["id"], "forged.html")
    assert b"FORGED_PAGE" in artifact(lab, job["id"], "forged.html")
    ended = float(artifact(lab, job["id"], "cells-ended"))
    written = [float(line) for line in artifact(lab, job["id"], "forger.log").split()]
    assert max(written) > ended, "the background writer did not outlive the cells"
    listed = lab.client.get(f"/api/v1/jobs/{job['id']}/artifacts").json()["items"]
    assert {"forged.html", "forged.ipynb"} <= {item["path"] for item in listed}
    download = lab.client.get(f"/api/v1/jobs/{job['id']}/artifacts/forged.html")
    assert download.headers["Content-Disposition"].startswith("attachment")


def test_labtrain_run_takes_a_notebook_and_its_parameters(lab, tmp_path):
    path = tmp_path / "week3.ipynb"
    path.write_bytes(notebook(PARAMETERS, TRAINING))
    env = {**lab.env, "LABTRAIN_URL": lab.url, "LABTRAIN_TOKEN": lab.token}
    ran = subprocess.run(
        [sys.executable, "-m", "service", "run", str(path), "-p", "epochs=2", "-p", "rate=0.75", "--json"]
        + ["--download", str(tmp_path / "results")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    job = json.loads(ran.stdout)
    assert job["status"] == "succeeded" and job["spec"]["code"]["parameters"] == {"epochs": 2, "rate": 0.75}
    assert [(e["epoch"], e["loss"]) for e in lab.epochs(job["id"])] == [(1, 0.75), (2, 0.375)]
    # The executed notebook (an artifact) and the page the worker rendered from it
    executed = nbformat.read(tmp_path / "results" / "week3.ipynb", as_version=4)
    assert any(cell.get("outputs") for cell in executed.cells if cell.cell_type == "code")
    assert "epochs" in (tmp_path / "results" / "week3.html").read_text()

    bad = subprocess.run(
        [sys.executable, "-m", "service", "run", str(path), "-p", "no-equals"], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "is not NAME=VALUE" in bad.stderr


def test_a_failing_cell_fails_the_job_naming_the_cell_its_first_line_and_the_error(lab):
    source = lab.upload(
        "broken.ipynb",
        notebook(new_code_cell("x = 1"), new_code_cell("\n# the mean\ny = x / 0\nprint(y)"), new_code_cell("z = 3")),
    )
    job = run_job(lab, {"code": {"source": source}})
    assert job["status"] == "failed" and job["error"]["code"] == "cell_failed", job
    assert job["error"]["message"] == "cell 2 of 3 failed (`# the mean`): ZeroDivisionError: division by zero"
    executed = nbformat.reads(artifact(lab, job["id"], "broken.ipynb").decode(), as_version=4)
    assert executed.cells[1].outputs[-1]["ename"] == "ZeroDivisionError"
    assert executed.cells[2].get("execution_count") is None  # never ran
    assert "ZeroDivisionError" in notebook_page(lab, job["id"])  # a failed notebook's page too


def test_colab_lines_get_a_message_instead_of_a_stack_trace(lab):
    installed = lab.upload("pip_ok.ipynb", notebook(new_code_cell("!pip install -q numpy torch\nprint('went on')")))
    job = run_job(lab, {"code": {"source": installed}})
    assert job["status"] == "succeeded", job["error"]
    log = lab.log(job["id"])
    assert "jobs have no network, so `pip install` was skipped; already installed: numpy" in log
    assert "went on" in log

    missing = lab.upload("pip_missing.ipynb", notebook(new_code_cell("%pip install transformers==4.40")))
    job = run_job(lab, {"code": {"source": missing}})
    assert job["status"] == "failed" and job["error"]["code"] == "cell_failed", job
    assert "transformers is not installed here, and jobs have no network" in job["error"]["message"]
    assert (
        "Installed here: " in job["error"]["message"]
        and "numpy" in job["error"]["message"]
        and "torch" in job["error"]["message"]
    )

    colab = lab.upload(
        "colab.ipynb", notebook(new_code_cell("from google.colab import drive\ndrive.mount('/content/drive')"))
    )
    job = run_job(lab, {"code": {"source": colab}})
    assert job["status"] == "failed" and job["error"]["code"] == "cell_failed", job
    assert "google.colab exists only on Colab" in job["error"]["message"]
    assert "labtrain_job.dataset_path()" in job["error"]["message"] and "Traceback" not in job["error"]["message"]


def test_a_search_varies_a_notebook_parameter_and_finishes(lab):
    source = lab.upload("search.ipynb", notebook(PARAMETERS, TRAINING))
    search = run_job(
        lab,
        {
            "code": {"source": source, "parameters": {"epochs": 2}},
            "search": {
                "strategy": "grid",
                "metric": "loss",
                "space": {"rate": {"type": "categorical", "choices": [0.4, 0.1, 0.8]}},
                "parallel": 2,
            },
        },
        timeout=300,
    )
    assert search["status"] == "succeeded", search["error"]
    assert search["result"]["best_params"] == {"rate": 0.1}
    assert search["result"]["best_value"] == pytest.approx(0.05)  # the loss it reported last: rate / 2
    best = lab.client.get(f"/api/v1/jobs/{search['result']['best_trial']}").json()
    assert best["spec"]["code"]["parameters"] == {"epochs": 2, "rate": 0.1}


# --- models from code -----------------------------------------------------------------------


def project(*names: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.write(MODELS / name, name)
    return buffer.getvalue()


def predict(lab: Lab, model_id: str, **kwargs) -> dict:
    answer = lab.client.post(f"/api/v1/models/{model_id}/predict", **kwargs)
    assert answer.status_code == 200, answer.text[:500]
    return answer.json()


def test_a_pytorch_model_answers_predict_as_onnx_without_the_api_importing_the_students_module(lab, tmp_path):
    marker = Path("/tmp") / MARKER
    marker.unlink(missing_ok=True)
    imported = subprocess.run(  # the module does leave a trace when imported ...
        [sys.executable, "-c", "import shapes"], cwd=MODELS, capture_output=True, text=True, timeout=120
    )
    assert imported.returncode == 0 and marker.exists(), imported.stderr
    marker.unlink()

    source = lab.upload("project.zip", project("torch_outputs.py", "shapes.py"))
    job = run_job(lab, {"code": {"source": source, "entrypoint": "torch_outputs.py"}})
    assert job["status"] == "succeeded", job["error"]
    model = lab.client.get(f"/api/v1/models/{job['result']['model_id']}").json()
    assert (model["framework"], model["format"], model["trained_with"]) == ("onnx", "onnx", "pytorch")
    assert model["input"] == {"shape": [1, 8, 8], "dtype": "float32"} and model["task"] == "output"
    assert model["algorithm"] == "SmallNet"
    assert model["picture"] == {"size": [8, 8], "channels": 1, "digits": False}  # an upload is resized to 8x8

    with np.load(io.BytesIO(artifact(lab, job["id"], "check.npz"))) as check:
        x, expected = check["x"], check["y"]
    got = np.asarray(predict(lab, model["id"], json={"instances": x.tolist()})["predictions"])
    assert got.shape == (100, 2) and np.abs(got - expected).max() < 1e-5
    assert not marker.exists()  # ... and the API answered without importing it

    download = lab.client.get(f"/api/v1/models/{model['id']}/download")
    assert download.status_code == 200
    assert len(onnx.load_model_from_string(download.content).graph.input) == 1


def test_a_keras_model_answers_predict_as_onnx_with_its_own_outputs(lab):
    source = lab.upload("keras_outputs.py", (MODELS / "keras_outputs.py").read_bytes())
    job = run_job(lab, {"code": {"source": source}})
    assert job["status"] == "succeeded", job["error"]
    model_id = job["result"]["model_id"]
    model = lab.client.get(f"/api/v1/models/{model_id}").json()
    assert (model["framework"], model["trained_with"], model["input"]["shape"]) == ("onnx", "tensorflow", [12])
    with np.load(io.BytesIO(artifact(lab, job["id"], "check.npz"))) as check:
        x, expected = check["x"], check["y"]
    got = np.asarray(predict(lab, model_id, json={"instances": x.tolist()})["predictions"])
    assert got.shape == (100, 3) and np.abs(got - expected).max() < 1e-5


def test_an_mnist_model_from_code_reads_pictures_of_digits_scaled_as_the_course_does(lab):
    source = lab.upload("mnist_mlp.py", (MODELS / "mnist_mlp.py").read_bytes())
    job = run_job(lab, {"code": {"source": source}, "dataset": "mnist"})
    assert job["status"] == "succeeded", job["error"]
    model_id = job["result"]["model_id"]
    model = lab.client.get(f"/api/v1/models/{model_id}").json()
    assert model["task"] == "classification" and model["classes"] == list(range(10))
    assert model["class_names"] == [str(d) for d in range(10)]
    assert model["picture"] == {"size": [28, 28], "channels": 1, "digits": True}  # its page offers the canvas

    _, _, x_test, y_test = load_mnist_8k()
    rows = (x_test[:50].reshape(50, 784) / 255.0).tolist()
    by_rows = predict(lab, model_id, json={"instances": rows})
    assert np.mean(np.asarray(by_rows["predictions"]) == y_test[:50]) > 0.8
    assert np.allclose(np.sum(by_rows["probabilities"], axis=1), 1.0, atol=1e-4)

    files = [("file", (f"{i}.png", encode(picture(x_test[i])), "image/png")) for i in range(20)]
    by_pictures = predict(lab, model_id, files=files)
    assert np.mean(np.asarray(by_pictures["predictions"]) == y_test[:20]) >= 0.7
    assert by_pictures["labels"] == [str(p) for p in by_pictures["predictions"]]

    wrong = lab.client.post(f"/api/v1/models/{model_id}/predict", json={"instances": [[0.5] * 10]})
    assert wrong.status_code == 422 and wrong.json()["error"]["details"]["field"] == "instances.0"


def test_a_scikit_learn_pipeline_is_served_and_one_with_the_students_own_class_is_refused(lab):
    source = lab.upload("sklearn_pipeline.py", (MODELS / "sklearn_pipeline.py").read_bytes())
    job = run_job(lab, {"code": {"source": source}})
    assert job["status"] == "succeeded", job["error"]
    answer = predict(lab, job["result"]["model_id"], json={"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]})
    assert answer["predictions"] == [0, 2] and answer["labels"] == ["setosa", "virginica"]

    job = run_job(lab, {"code": {"source": source, "args": ["--own"]}})
    assert job["status"] == "failed" and job["error"]["code"] == "model_export_failed", job
    assert (
        "Doubler" in job["error"]["message"]
        and "only scikit-learn's own estimators can be served" in job["error"]["message"]
    )


def test_a_model_that_cannot_be_exported_fails_the_job_with_the_exporters_message_and_the_fix(lab):
    source = lab.upload("not_exportable.py", (MODELS / "not_exportable.py").read_bytes())
    job = run_job(lab, {"code": {"source": source}})
    assert job["status"] == "failed" and job["error"]["code"] == "model_export_failed", job
    assert "PyTorch could not export the model to ONNX" in job["error"]["message"]
    assert "torch.onnx.export(dynamo=True)" in job["error"]["message"] and "How to fix" in job["error"]["message"]
    assert "not reached" not in lab.log(job["id"])
    answer = lab.client.get(f"/api/v1/models/{job['id']}")
    assert answer.status_code == 409


def test_notebook_parameters_are_checked_at_submit(lab):
    source = lab.upload("params.ipynb", notebook(PARAMETERS))
    bad = lab.client.post("/api/v1/jobs", json={"code": {"source": source, "parameters": {"not a name": 1}}})
    assert bad.status_code == 422 and bad.json()["error"]["details"]["field"] == "code.parameters.not a name"
    script = lab.upload("plain.py", b"print('hi')\n")
    bad = lab.client.post("/api/v1/jobs", json={"code": {"source": script, "parameters": {"epochs": 2}}})
    assert bad.status_code == 422 and bad.json()["error"]["details"]["field"] == "code.parameters"
    assert json.loads(bad.text)["error"]["message"].startswith("parameters are a notebook's")
