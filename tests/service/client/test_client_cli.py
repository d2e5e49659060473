"""The `labtrain` client commands, run as a user runs them (the installed `labtrain` script in
subprocesses) against a real service: PostgreSQL, Redis, dispatcher, one CPU worker, the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import click
import pytest
import yaml
from sqlalchemy import select

from service.client.spec import merge, parse_space, spec_from_flags
from service.core.db import Database
from service.core.orm import User
from service.jobs import lifecycle
from tests.conftest import free_port
from tests.support.digit_images import load_mnist_8k, render
from tests.support.processes import (
    ServiceProcess,
    create_user_token,
    deployment_env,
    run_cli,
    start_stack,
    stop_all,
    wait_until_healthy,
)

LABTRAIN = Path(sys.executable).parent / "labtrain"
SMALL_NET = {
    "dataset": "mnist",
    "framework": "pytorch",
    "network": {"preset": "feedforward"},
    "training": {"epochs": 1},
}
LONG_NET = ["--dataset", "mnist", "--framework", "pytorch", "--network", "lenet", "--epochs", "100"]


class Stack:
    def __init__(self, url: str, env: dict[str, str], processes: list[ServiceProcess]):
        self.url, self.env, self.processes = url, env, processes

    def create_user(self, name: str) -> str:
        return create_user_token(self.env, name)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, make_pg_database, make_redis_url):
    home = tmp_path_factory.mktemp("client-cli")
    env = deployment_env(home, LABTRAIN_DATABASE_URL=make_pg_database(), LABTRAIN_BROKER_URL=make_redis_url())
    port = free_port()
    processes = start_stack(env, home, port, ["--queues", "cpu", "--concurrency", "2"], api_workers=1)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", processes)
        yield Stack(f"http://127.0.0.1:{port}", env, processes)
    finally:
        stop_all(processes)


def client_env(config_home: Path, **extra: str) -> dict[str, str]:
    """A user's shell: their own HOME and config folder, no LABTRAIN_* settings unless given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABTRAIN_")}
    env.update(HOME=str(config_home), XDG_CONFIG_HOME=str(config_home / "config"), **extra)
    return env


def labtrain(
    args: list[str], env: dict[str, str], stdin: str | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(LABTRAIN), *args], env=env, input=stdin, capture_output=True, text=True, timeout=timeout, cwd=cwd
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def as_json(result: subprocess.CompletedProcess):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def alice(stack, tmp_path_factory) -> dict[str, str]:
    """Alice's environment after `labtrain login`: later commands find the server and token in her config."""
    home = tmp_path_factory.mktemp("alice-home")
    env = client_env(home)
    token = stack.create_user("alice")
    logged_in = labtrain(["login", "--url", stack.url, "--token", token], env)
    assert logged_in.returncode == 0, logged_in.stderr
    return env


def submit(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    result = labtrain(["submit", *args], env, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def wait_running(env: dict[str, str], job_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if as_json(labtrain(["status", job_id, "--json"], env))["status"] == "running":
            return
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} did not start")


# -- login and errors ------------------------------------------------------------------------


def test_submit_with_nothing_names_the_kinds_of_job_the_server_runs(alice):
    result = labtrain(["submit"], alice)
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())  # click wraps the line
    for kind in ("algorithm (Classic machine learning)", "framework (Neural network)", "code (Your own script"):
        assert kind in message, message


def test_login_stores_a_private_config_that_later_commands_use(stack, alice):
    config = Path(alice["XDG_CONFIG_HOME"]) / "labtrain" / "config.json"
    assert config.stat().st_mode & 0o777 == 0o600
    assert json.loads(config.read_text())["url"] == stack.url
    assert as_json(labtrain(["jobs", "--json"], alice))["items"] is not None
    # The environment wins over the stored login.
    elsewhere = labtrain(["jobs"], {**alice, "LABTRAIN_URL": "http://127.0.0.1:1"})
    assert elsewhere.returncode != 0 and "cannot connect" in elsewhere.stderr and "127.0.0.1:1" in elsewhere.stderr


def test_without_a_login_the_commands_say_to_log_in(tmp_path):
    result = labtrain(["jobs"], client_env(tmp_path))
    assert result.returncode != 0 and "labtrain login" in result.stderr


def test_a_bad_token_prints_the_apis_message(stack, tmp_path):
    env = client_env(tmp_path)
    refused = labtrain(["login", "--url", stack.url, "--token", "lt_not-a-token"], env)
    assert refused.returncode != 0 and "the token is not valid" in refused.stderr
    assert not (tmp_path / "config" / "labtrain" / "config.json").exists()
    with_env = labtrain(["queue"], {**env, "LABTRAIN_URL": stack.url, "LABTRAIN_TOKEN": "lt_wrong"})
    assert with_env.returncode != 0 and "the token is not valid" in with_env.stderr and not with_env.stdout


def test_an_invalid_spec_prints_the_field_and_exits_non_zero(alice):
    result = labtrain(["submit", "--dataset", "iris", "--algorithm", "knn", "--param", "n_neighbors=0"], alice)
    assert result.returncode != 0 and "params.n_neighbors" in result.stderr and not result.stdout


# -- submit, watch, jobs, status, logs --------------------------------------------------------


def test_submit_a_yaml_file_and_watch_it_succeed(alice, tmp_path):
    spec = tmp_path / "iris.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "iris-knn",
                "dataset": "iris",
                "algorithm": "knn",
                "params": {"n_neighbors": 5},
                "evaluation": {"cv": 3, "seed": 0},
            }
        )
    )
    job_id = submit(alice, str(spec))
    watched = labtrain(["watch", job_id], alice)
    assert watched.returncode == 0, watched.stderr
    assert f"job {job_id} succeeded" in watched.stdout and "accuracy:" in watched.stdout
    assert "model:" in watched.stdout

    table = labtrain(["jobs"], alice)
    assert table.returncode == 0 and table.stdout.startswith("ID")
    row = next(line for line in table.stdout.splitlines() if line.startswith(job_id))
    assert "iris-knn" in row and "succeeded" in row and "100%" in row
    shown = labtrain(["status", job_id], alice)
    assert shown.returncode == 0 and "accuracy" in shown.stdout
    log = labtrain(["logs", job_id, "-f"], alice)
    assert log.returncode == 0
    assert as_json(labtrain(["logs", job_id, "--json"], alice))["status"] == "succeeded"


def test_submit_a_search_from_flags_and_watch_it(alice):
    job = as_json(
        labtrain(
            [
                "submit",
                "--dataset",
                "iris",
                "--algorithm",
                "knn",
                "--search",
                "random",
                "--space",
                "n_neighbors=int:1:15",
                "--space",
                "weights=cat:uniform,distance",
                "--trials",
                "3",
                "--parallel",
                "1",
                "--json",
            ],
            alice,
        )
    )
    assert job["spec"]["search"]["space"]["weights"]["choices"] == ["uniform", "distance"]
    watched = labtrain(["watch", job["id"], "--interval", "0.2"], alice)
    assert watched.returncode == 0, watched.stderr
    assert "succeeded" in watched.stdout and "best value:" in watched.stdout


def test_watch_a_cancelled_job_exits_non_zero(alice):
    job_id = submit(alice, *LONG_NET)
    watcher = subprocess.Popen(
        [str(LABTRAIN), "watch", job_id], env=alice, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    # A log followed with looks an hour apart ends with the job all the same: it hears the end on
    # the job's event stream (service/client/status_stream.py).
    follower = subprocess.Popen(
        [str(LABTRAIN), "logs", job_id, "-f", "--interval", "3600"],
        env=alice,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_running(alice, job_id)
        cancelled = labtrain(["cancel", job_id], alice)
        assert cancelled.returncode == 0 and "cancel requested" in cancelled.stdout
        out, err = watcher.communicate(timeout=30)
        _log, log_err = follower.communicate(timeout=60)
    finally:
        watcher.kill()
        follower.kill()
    assert watcher.returncode == 1, err
    assert f"job {job_id} cancelled" in out and "cancel requested by alice" in out
    assert follower.returncode == 0, log_err


def test_watch_a_job_past_its_time_limit_fails(stack, tmp_path):
    env = client_env(tmp_path, LABTRAIN_URL=stack.url, LABTRAIN_TOKEN=stack.create_user("slowpoke"))
    assert run_cli(["users", "limits", "slowpoke", "--max-run-time-s", "1"], stack.env).returncode == 0
    job_id = submit(env, *LONG_NET)
    watched = labtrain(["watch", job_id], env)
    assert watched.returncode == 1
    assert "failed" in watched.stdout and "time_limit_exceeded" in watched.stdout
    as_machine = labtrain(["watch", job_id, "--json"], env)
    assert as_machine.returncode == 1 and json.loads(as_machine.stdout)["error"]["code"] == "time_limit_exceeded"


def test_cancel_a_queued_job(alice):
    # No GPU worker is online, so a job for the GPU waits in the queue.
    job_id = submit(alice, "--dataset", "mnist", "--framework", "pytorch", "--network", "mlp", "--device", "gpu")
    queue = labtrain(["queue"], alice)
    assert queue.returncode == 0 and job_id in queue.stdout and "no worker online" in queue.stdout
    cancelled = labtrain(["cancel", job_id], alice)
    assert cancelled.returncode == 0 and f"job {job_id} cancelled" in cancelled.stdout
    assert as_json(labtrain(["status", job_id, "--json"], alice))["status"] == "cancelled"
    assert labtrain(["watch", job_id], alice).returncode == 1
    again = labtrain(["cancel", job_id], alice)
    assert again.returncode != 0 and "already cancelled" in again.stderr


# -- models ----------------------------------------------------------------------------------


def test_predict_png_digits_and_download_the_model(alice, tmp_path):
    job_id = submit(alice, "-", stdin=json.dumps(SMALL_NET))
    job = json.loads(labtrain(["watch", job_id, "--json"], alice).stdout)
    assert job["status"] == "succeeded", job["error"]
    model_id = job["result"]["model_id"]

    _x_train, _y_train, x_test, y_test = load_mnist_8k()
    files = []
    for index in range(3):
        path = tmp_path / f"digit-{index}.png"
        path.write_bytes(render(x_test[index]))
        files += ["--file", str(path)]
    answer = as_json(labtrain(["predict", model_id, *files, "--json"], alice))
    assert len(answer["predictions"]) == 3
    assert sum(int(p) == int(y) for p, y in zip(answer["predictions"], y_test[:3])) >= 2
    readable = labtrain(["predict", model_id, *files], alice)
    assert readable.returncode == 0 and readable.stdout.startswith("digit-0.png: ")
    zeros = as_json(labtrain(["predict", model_id, "--instances", json.dumps([[[0] * 28] * 28]), "--json"], alice))
    assert len(zeros["probabilities"][0]) == 10

    saved = as_json(labtrain(["download", model_id, "-o", str(tmp_path), "--json"], alice))
    path = Path(saved["path"])
    assert path.parent == tmp_path and path.name.startswith(model_id) and path.stat().st_size == saved["bytes"] > 0
    again = labtrain(["download", model_id, "-o", str(tmp_path)], alice)
    assert again.returncode != 0 and "exists" in again.stderr
    here = tmp_path / "here"
    here.mkdir()
    default_name = labtrain(["download", model_id], alice, cwd=here)
    assert default_name.returncode == 0 and (here / path.name).exists()


def test_json_output_and_the_readable_catalog(alice):
    assert "cpu" in as_json(labtrain(["queue", "--json"], alice))["queues"]
    catalog = as_json(labtrain(["algorithms", "--json"], alice))
    assert any(a["name"] == "knn" for a in catalog["algorithms"])
    readable = labtrain(["algorithms"], alice)
    assert readable.returncode == 0 and "knn:" in readable.stdout and "n_neighbors: integer 1..10000" in readable.stdout
    listing = as_json(labtrain(["jobs", "--all", "--limit", "1", "--json"], alice))
    assert len(listing["items"]) >= 2 and listing["next_cursor"] is None
    assert as_json(labtrain(["status", listing["items"][0]["id"], "--json"], alice))["id"] == listing["items"][0]["id"]
    missing = labtrain(["status", "nope", "--json"], alice)
    assert missing.returncode != 0 and not missing.stdout


# -- the spec flags, in-process ----------------------------------------------------------------


def test_the_compact_space_syntax():
    assert parse_space("n=int:1:30") == ("n", {"type": "int", "low": 1, "high": 30})
    assert parse_space("lr=float:1e-4:0.1:log") == ("lr", {"type": "float", "low": 1e-4, "high": 0.1, "log": True})
    assert parse_space("c=float:0.1:1:step=0.1")[1]["step"] == 0.1
    assert parse_space("b=cat:16,32") == ("b", {"type": "categorical", "choices": [16, 32]})
    for bad in ("n", "n=int:1", "n=bool:1:2", "n=cat:", "n=int:1:2:cubic"):
        with pytest.raises(click.BadParameter):
            parse_space(bad)


def test_flags_refine_a_spec_file():
    flags = {
        key: None
        for key in (
            "name",
            "dataset",
            "target",
            "algorithm",
            "framework",
            "network",
            "epochs",
            "batch_size",
            "learning_rate",
            "device",
            "cv",
            "search",
            "space_json",
            "trials",
            "parallel",
            "metric",
        )
    }
    flags.update(param=("n_neighbors=7", "weights=distance"), space=(), cv=5)
    spec = merge({"dataset": "iris", "algorithm": "knn", "evaluation": {"seed": 1}}, spec_from_flags(flags))
    assert spec == {
        "dataset": "iris",
        "algorithm": "knn",
        "params": {"n_neighbors": 7, "weights": "distance"},
        "evaluation": {"seed": 1, "cv": 5},
    }


def test_submit_an_optimisation_from_stdin_and_watch_it(alice):
    spec = {"optimize": {"strategy": "random", "function": "sphere", "dimensions": 2, "evaluations": 300}}
    job_id = submit(alice, "-", stdin=yaml.safe_dump(spec))
    watched = labtrain(["watch", job_id, "--interval", "0.2"], alice)
    assert watched.returncode == 0, watched.stderr
    assert f"job {job_id} succeeded" in watched.stdout and "best value:" in watched.stdout


class FakeApi:
    """Answers `watch` with a network job that runs two epochs."""

    def __init__(self):
        started = "2026-01-01T00:00:00Z"
        self.jobs = iter(
            [
                {"id": "j", "status": "queued", "queue": "cpu", "position": 2, "family": "network"},
                {
                    "id": "j",
                    "status": "running",
                    "family": "network",
                    "started_at": started,
                    "progress": {"fraction": 0.5, "epoch": 1, "epochs": 2, "metrics": {"loss": 0.5, "accuracy": 0.8}},
                },
                {
                    "id": "j",
                    "status": "succeeded",
                    "family": "network",
                    "started_at": started,
                    "progress": {"fraction": 1.0, "epoch": 2, "epochs": 2},
                    "metrics": {"accuracy": 0.9},
                },
            ]
        )
        self.events = iter(
            [
                [],
                [{"seq": 1, "type": "epoch", "data": {"epoch": 1, "epochs": 2, "loss": 0.5}}],
                [{"seq": 2, "type": "epoch", "data": {"epoch": 2, "epochs": 2, "loss": 0.25}}],
            ]
        )

    def get(self, path, **params):
        return {"items": next(self.events)} if path.endswith("/events") else next(self.jobs)


@pytest.mark.parametrize("live", [True, False])
def test_watch_draws_one_live_line_on_a_terminal_and_plain_lines_elsewhere(capsys, live):
    from service.client.watch import follow

    job = follow(FakeApi(), "j", interval=0, live=live)
    out = capsys.readouterr().out
    assert job["status"] == "succeeded"
    assert "queued: position 2 in the cpu queue" in out
    assert "epoch 1/2 loss 0.5\n" in out and "epoch 2/2 loss 0.25\n" in out
    if live:
        assert "\r\x1b[K" in out and "epoch 1/2 loss 0.5 accuracy 0.8  (" in out and "eta" in out
    else:
        assert "\r" not in out and "eta" not in out


def test_a_job_of_a_queue_no_longer_configured_says_why_it_waits(stack, alice):
    database = Database(stack.env["LABTRAIN_DATABASE_URL"])  # a job of a queue an admin has since removed
    with database.session() as session:
        owner = session.scalar(select(User).where(User.name == "alice"))
        spec = {"dataset": "iris", "algorithm": "knn", "device": "cpu"}
        job_id = lifecycle.create_job(session, owner, family="classic", spec=spec, queue="gone", name=None).id
    database.dispose()
    queue = labtrain(["queue"], alice)
    assert queue.returncode == 0, queue.stderr
    assert "gone: 1 queued, 0 running  [not configured: queue gone is no longer configured" in queue.stdout
    shown = labtrain(["status", job_id], alice)
    assert "queued, waiting: queue gone is no longer configured on this server" in shown.stdout
    assert labtrain(["cancel", job_id], alice).returncode == 0


# -- waiting on the job's event stream ---------------------------------------------------------


def test_waiting_for_a_job_ends_when_it_does_not_at_the_next_look(stack):
    """Job.wait and `labtrain watch` hear the job's end on its event stream (service/client/
    status_stream.py): with a look an hour apart, they still return once the job has ended."""
    from service.client.lab import Lab

    lab = Lab(stack.url, stack.create_user("wendy"))
    job = lab.submit({"dataset": "iris", "algorithm": "knn"})
    waited: list = []
    waiter = threading.Thread(target=lambda: waited.append(job.wait(poll=3600).status), daemon=True)
    waiter.start()
    waiter.join(120)  # a waiter that slept between looks would still be asleep
    assert waited == ["succeeded"]

    env = client_env(
        Path(tempfile.mkdtemp()),
        LABTRAIN_URL=stack.url,
        LABTRAIN_TOKEN=lab.api.session.headers["Authorization"].removeprefix("Bearer "),
    )
    job_id = json.loads(labtrain(["submit", "--dataset", "iris", "--algorithm", "knn", "--json"], env).stdout)["id"]
    watched = labtrain(["watch", job_id, "--interval", "3600"], env, timeout=120)
    assert watched.returncode == 0 and f"job {job_id} succeeded" in watched.stdout, watched.stderr


def test_a_server_that_does_not_stream_leaves_the_wait_a_sleep(stack):
    from service.client.lab import Lab
    from service.client.status_stream import StatusStream

    lab = Lab(stack.url, stack.create_user("walter"))
    with StatusStream(lab.api, "no-such-job") as stream:  # a 404, not a stream
        stream._thread.join(60)
        assert not stream._thread.is_alive()  # it gave up reading, and did not retry
        assert stream.wait(0.01) is False
