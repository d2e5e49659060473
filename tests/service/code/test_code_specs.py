"""Code job specs, checked at submit: the source is the user's, the entrypoint is in it, the
data set exists, the resources stay within the user's limits, a search names what it varies
and what it scores, and a server whose workers cannot make a sandbox says so at once."""

from __future__ import annotations

import io

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from sqlalchemy import select

from service.core.orm import User
from service.jobs.limits import set_limits
from service.lab import worker_registry
from tests.service.code.test_sources import SCRIPT, upload, zipped
from tests.support.api import assert_error

pytestmark = pytest.mark.fast


@pytest.fixture
def script(client, alice):
    return upload(client, alice, SCRIPT, "train.py").get_json()["id"]


@pytest.fixture
def project(client, alice):
    good = nbformat.writes(new_notebook(cells=[new_code_cell("lr = 0.5")])).encode()
    archive = zipped(
        {"train.py": SCRIPT, "evaluate.py": SCRIPT, "notebook.ipynb": b"{}", "good.ipynb": good, "README.md": b"hi"}
    )
    return upload(client, alice, archive, "project.zip").get_json()["id"]


def submit(client, headers, **spec):
    return client.post("/api/v1/jobs", json=spec, headers=headers)


def test_a_script_is_a_job_with_defaults_filled_in(client, alice, script, settings):
    created = submit(client, alice, code={"source": script, "args": ["--epochs", "2"]}, dataset="iris")
    assert created.status_code == 201, created.get_json()
    job = created.get_json()
    assert job["family"] == "code" and job["queue"] == "cpu"
    assert job["spec"]["code"] == {
        "source": script,
        "entrypoint": "train.py",
        "args": ["--epochs", "2"],
        "parameters": {},
    }
    assert job["spec"]["resources"] == {
        "memory_mb": settings.code_memory_mb,
        "cpus": 1,
        "time_limit_s": settings.max_run_time_s,
    }
    assert job["spec"]["dataset"] == "iris"


def test_the_time_limit_asked_for_is_the_jobs(client, alice, script, db):
    job = submit(client, alice, code={"source": script}, resources={"time_limit_s": 90}).get_json()
    from service.core.orm import Job

    with db.session() as session:
        assert session.get(Job, job["id"]).time_limit_s == 90


@pytest.mark.parametrize(
    "code,field",
    [
        ({"source": "0" * 22}, "code.source"),
        ({"source": "x" * 65}, "code.source"),
        ({}, "code.source"),
        ({"source": "{script}", "entrypoint": "missing.py"}, "code.entrypoint"),
        ({"source": "{script}", "args": "--epochs 5"}, "code.args"),
        ({"source": "{script}", "args": [5]}, "code.args.0"),
        ({"source": "{script}", "shell": True}, "code.shell"),
    ],
)
def test_bad_code_sections_name_the_field(client, alice, script, code, field):
    code = {k: (v.replace("{script}", script) if isinstance(v, str) else v) for k, v in code.items()}
    status = 404 if field == "code.source" and code.get("source") == "0" * 22 else 422
    assert_error(submit(client, alice, code=code), status, field)


def test_a_project_needs_its_entrypoint_named(client, alice, project):
    assert_error(submit(client, alice, code={"source": project}), 422, "code.entrypoint")
    assert submit(client, alice, code={"source": project, "entrypoint": "evaluate.py"}).status_code == 201
    assert_error(submit(client, alice, code={"source": project, "entrypoint": "README.md"}), 422, "code.entrypoint")
    notebook = submit(client, alice, code={"source": project, "entrypoint": "notebook.ipynb"})
    assert_error(notebook, 422, "code.entrypoint")  # "{}" is JSON, but no notebook
    assert "is not a notebook Jupyter can read" in notebook.get_json()["error"]["message"]
    good = submit(client, alice, code={"source": project, "entrypoint": "good.ipynb", "parameters": {"lr": 0.1}})
    assert good.status_code == 201, good.get_json()
    assert good.get_json()["spec"]["code"]["parameters"] == {"lr": 0.1}
    with_args = submit(client, alice, code={"source": project, "entrypoint": "good.ipynb", "args": ["--lr", "1"]})
    assert_error(with_args, 422, "code.args")  # a notebook's values are parameters


def test_another_users_source_is_unknown(client, bob, script):
    assert_error(submit(client, bob, code={"source": script}), 404, "code.source")


@pytest.mark.parametrize(
    "dataset,status,field",
    [
        ("mnist", 201, None),
        ("digits", 201, None),
        ("wine", 201, None),
        ("imagenet", 422, "dataset"),
        ({"id": "0" * 22}, 404, "dataset.id"),
        ({"name": "x"}, 422, "dataset"),
    ],
)
def test_the_data_set_is_checked(client, alice, script, dataset, status, field):
    response = submit(client, alice, code={"source": script}, dataset=dataset)
    if field is None:
        assert response.status_code == status, response.get_json()
    else:
        assert_error(response, status, field)


def test_an_uploaded_data_set_is_named_by_its_id(client, alice, script):
    rows = "a,b\n" + "".join(f"{i},{i % 3}\n" for i in range(10))
    dataset = client.post(
        "/api/v1/datasets",
        data={"file": (io.BytesIO(rows.encode()), "t.csv")},
        headers=alice,
        content_type="multipart/form-data",
    ).get_json()
    job = submit(client, alice, code={"source": script}, dataset={"id": dataset["id"]}).get_json()
    assert job["spec"]["dataset"] == {"id": dataset["id"]}


@pytest.mark.parametrize(
    "resources,field",
    [
        ({"memory_mb": 999_999}, "resources.memory_mb"),
        ({"cpus": 64}, "resources.cpus"),
        ({"time_limit_s": 10**9}, "resources.time_limit_s"),
        ({"memory_mb": 10}, "resources.memory_mb"),
        ({"gpus": 1}, "resources.gpus"),
    ],
)
def test_resources_beyond_the_limits_are_a_422_naming_them(client, alice, script, resources, field):
    assert_error(submit(client, alice, code={"source": script}, resources=resources), 422, field)


def test_an_admin_raises_a_users_limit(client, alice, script, db):
    assert_error(
        submit(client, alice, code={"source": script}, resources={"memory_mb": 16_000}), 422, "resources.memory_mb"
    )
    with db.session() as session:
        set_limits(
            session, session.scalar(select(User).where(User.name == "alice")), {"max_memory_mb": 32_000}, actor="prof"
        )
    created = submit(client, alice, code={"source": script}, resources={"memory_mb": 16_000})
    assert created.status_code == 201 and created.get_json()["spec"]["resources"]["memory_mb"] == 16_000


def test_a_search_varies_the_arguments_it_names_and_needs_a_metric(client, alice, script):
    code = {"source": script, "args": ["--lr", "{lr}", "--epochs", "2"]}
    space = {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}
    created = submit(
        client, alice, code=code, search={"strategy": "tpe", "trials": 4, "metric": "val_accuracy", "space": space}
    )
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["spec"]["search"]["direction"] == "maximize"
    loss = submit(
        client, alice, code=code, search={"strategy": "ga", "trials": 4, "metric": "val_loss", "space": space}
    ).get_json()
    assert loss["spec"]["search"]["direction"] == "minimize"
    assert_error(submit(client, alice, code=code, search={"strategy": "tpe", "space": space}), 422, "search.metric")
    other = {"momentum": {"type": "float", "low": 0.1, "high": 0.9}}
    assert_error(
        submit(client, alice, code=code, search={"strategy": "tpe", "metric": "loss", "space": other}),
        422,
        "search.space.momentum",
    )


def _heartbeat(db, name: str, capabilities: dict) -> None:
    with db.session() as session:
        worker_registry.heartbeat(
            session,
            name=name,
            queues=["cpu"],
            host="h",
            pid=1,
            concurrency=1,
            gpu_name=None,
            gpu_memory_mb=None,
            capabilities=capabilities,
        )


def test_a_server_whose_workers_cannot_sandbox_refuses_code_jobs_at_once(client, alice, script, db):
    _heartbeat(db, "w1", {"sandbox_error": "bubblewrap is not installed"})
    response = submit(client, alice, code={"source": script})
    assert_error(response, 422, "code", "sandbox_unavailable")
    assert "bubblewrap is not installed" in response.get_json()["error"]["message"]
    _heartbeat(db, "w2", {"sandbox": "bubblewrap 0.8.0, cgroup v1"})
    assert submit(client, alice, code={"source": script}).status_code == 201
