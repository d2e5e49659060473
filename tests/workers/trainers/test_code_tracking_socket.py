"""A code job's tracking endpoint, plumbed: the worker serves a WSGI app on the job's Unix socket
(workers/tracking_socket.py), the sandbox's forwarder (labtrain_job/forwarder.py) pipes
127.0.0.1:<port> in the job's own network namespace to it, and MLFLOW_TRACKING_URI names it.
Here the app is a small recording one (tests/workers/trainers/test_code_mlflow.py has MLflow's).

The program keeps its pid, signals, output and exit status; the endpoint ends with the attempt
(success, failure, cancel, preemption) and nothing of it is left; a job without an app is run
as before. Real sandboxes (bubblewrap and cgroups), the code trainer in process; not in the fast
tier but for the spec's checks."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from werkzeug.wrappers import Request, Response

from service.core.config import Settings
from tests.support.code_trainer import code_job, sandbox_settings
from tests.support.trainers import ListReporter, stopping_after_asks, yielding_after_epochs
from workers.tracking_socket import SOCKET_NAME, TrackingSocket
from workers.trainers import code as code_trainer
from workers.trainers.base import Allotment, JobFailed, JobResult, Preempted

RUN_ID = "ab" * 16


class Recorder:
    """A WSGI app that answers each request with what it got, records it, and reports the
    value `?loss=` names as the job's latest metric (as the MLflow endpoint's on_metrics does)."""

    def __init__(self):
        self.requests: list[tuple[str, str, int]] = []
        self.folded: list[dict[str, float]] = []
        self.sockets: list[Path] = []

    def factory(self, on_metrics):
        def app(environ, start_response):
            request = Request(environ)
            body = request.get_data()
            self.requests.append((request.method, request.path, len(body)))
            if "loss" in request.args:
                values = {"loss": float(request.args["loss"])}
                self.folded.append(values)
                on_metrics(values)
            answer = {"path": request.path, "bytes": len(body), "sha": sum(body) % 65521}
            return Response(json.dumps(answer), mimetype="application/json")(environ, start_response)

        return app

    def allotment(self, **fields) -> Allotment:
        return Allotment(tracking_app=self.factory, tracking_run_id=RUN_ID, **fields)


CLIENT = """
    import json, os, sys, urllib.request
    uri = os.environ["MLFLOW_TRACKING_URI"]
    print("uri", uri, "run", os.environ["MLFLOW_RUN_ID"], "tb", os.environ["LABTRAIN_TENSORBOARD_DIR"])
    print("pid", os.getpid(), "folder", sorted(os.listdir("/run/labtrain")) if os.path.isdir("/run/labtrain") else "-")
    got = json.loads(urllib.request.urlopen(uri + "/api/2.0/mlflow/ping?loss=0.5").read())
    print("get", got["path"])
    body = bytes(range(256)) * 4096  # 1 MiB each way: more than any buffer on the way holds
    got = json.loads(urllib.request.urlopen(uri + "/big", data=body).read())
    print("post", got["bytes"], got["sha"] == sum(body) % 65521)
    print("to stderr", file=sys.stderr)
    sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""

PLAIN = """
    import os
    print("vars", sorted(k for k in os.environ if k.startswith(("MLFLOW", "LABTRAIN"))))
    print("folder", os.path.exists("/run/labtrain"))
"""

ENDS = """
    import sys, time, urllib.request, os
    uri = os.environ["MLFLOW_TRACKING_URI"]
    urllib.request.urlopen(uri + "/started?loss=1").read()
    mode = sys.argv[1]
    if mode == "fail":
        sys.exit(3)
    import labtrain_job
    for epoch in range(1, 200):
        labtrain_job.report(epoch=epoch, loss=1.0 / epoch)
        if labtrain_job.preempted():
            print("yielding", flush=True)
            sys.exit(0)
        time.sleep(0.1)
"""


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    return sandbox_settings(tmp_path_factory.mktemp("code-tracking"), LABTRAIN_STOP_GRACE_S="5")


@pytest.fixture(params=["sandbox", "unsandboxed"])
def each_mode(request, settings) -> Settings:
    """The sandbox, and the plain process of LABTRAIN_CODE_SANDBOX=off (one person's machine)."""
    return settings if request.param == "sandbox" else dataclasses.replace(settings, code_sandbox="off")


@pytest.fixture
def sockets(monkeypatch) -> list[TrackingSocket]:
    """Every job socket the trainer makes, to check each is gone afterwards."""
    made: list[TrackingSocket] = []
    original = TrackingSocket.__init__

    def keep(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(TrackingSocket, "__init__", keep)
    return made


def all_gone(sockets: list[TrackingSocket]) -> bool:
    """Each socket made, and its folder (in the worker's temporary folder, outside the artifact store), removed."""
    return bool(sockets) and not any(s.folder.exists() or s.path.exists() for s in sockets)


def printed(reporter: ListReporter, word: str) -> list[str]:
    return [line.split(" ", 1)[1] for _, line in reporter.lines if line.startswith(word + " ")]


def test_a_script_reaches_its_endpoint_at_mlflow_tracking_uri(each_mode, sockets):
    recorder, reporter = Recorder(), ListReporter()
    run, inputs = code_job(each_mode, "reaches", CLIENT)
    result = code_trainer.train(run, inputs, reporter, recorder.allotment())
    assert isinstance(result, JobResult)
    uri, run_id, tensorboard = printed(reporter, "uri")[0].split()[0], RUN_ID, "/job/outputs/tensorboard"
    assert uri.startswith("http://127.0.0.1:") and printed(reporter, "uri")[0].split()[2] == run_id
    assert printed(reporter, "uri")[0].endswith(tensorboard if each_mode.code_sandbox == "required" else "tensorboard")
    assert printed(reporter, "get") == ["/api/2.0/mlflow/ping"]
    assert printed(reporter, "post") == [f"{256 * 4096} True"]
    assert ("stderr", "to stderr") in reporter.lines  # its output is the program's, as ever
    assert recorder.requests == [("GET", "/api/2.0/mlflow/ping", 0), ("POST", "/big", 256 * 4096)]
    assert result.metrics == {"loss": 0.5}  # what on_metrics said became the job's metrics
    if each_mode.code_sandbox == "required":
        pid, _, folder = printed(reporter, "pid")[0].split(" ", 2)
        assert pid == "2"  # the program is the sandbox init's child: the forwarder became it
        assert folder == str([SOCKET_NAME])
    assert all_gone(sockets)  # the socket and its folder are gone
    assert not str(sockets[0].folder).startswith(str(each_mode.artifact_dir))


def test_the_program_keeps_its_exit_status_and_output(each_mode, sockets):
    recorder, reporter = Recorder(), ListReporter()
    run, inputs = code_job(each_mode, "exits", CLIENT)
    run = run.model_copy(update={"code": run.code.model_copy(update={"args": ["5"]})})
    with pytest.raises(JobFailed) as failed:
        code_trainer.train(run, inputs, reporter, recorder.allotment())
    assert failed.value.code == "script_failed" and "exited with status 5" in failed.value.message
    assert "to stderr" in failed.value.message
    assert all_gone(sockets)


def test_the_endpoint_ends_with_a_failed_cancelled_or_preempted_attempt(settings, sockets):
    # failed
    recorder = Recorder()
    run, inputs = code_job(settings, "ends", ENDS)
    failing = run.model_copy(update={"code": run.code.model_copy(update={"args": ["fail"]})})
    with pytest.raises(JobFailed):
        code_trainer.train(failing, inputs, ListReporter(), recorder.allotment())
    assert recorder.folded == [{"loss": 1.0}] and len(sockets) == 1 and all_gone(sockets)

    # cancelled (the stop check says so while it runs)
    running = run.model_copy(update={"code": run.code.model_copy(update={"args": ["run"]})})
    reporter = ListReporter()
    allotted = stopping_after_asks(25, tracking_app=recorder.factory, tracking_run_id=RUN_ID)
    with pytest.raises(code_trainer.Cancelled):
        code_trainer.train(running, inputs, reporter, allotted)
    assert len(sockets) == 2 and all_gone(sockets)
    with socket.socket(socket.AF_UNIX) as probe, pytest.raises(OSError):
        probe.connect(str(sockets[1].path))

    # preempted: SIGUSR1 reaches the program (not the forwarder), which yields on its own
    reporter = ListReporter()
    yielding = yielding_after_epochs(reporter, 2, tracking_app=recorder.factory, tracking_run_id=RUN_ID)
    with pytest.raises(Preempted):
        code_trainer.train(running, inputs, reporter, yielding)
    assert "yielding" in reporter.printed()
    assert "did not end within the stop grace" not in str(reporter.events)
    assert len(sockets) == 3 and all_gone(sockets)


class _HostApi(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"host")

    def log_message(self, *args):
        pass


def test_the_sandbox_still_cannot_reach_the_host(settings):
    """The forwarder reaches the job's socket alone: a port of the host (the API's) stays out of reach."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HostApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        script = f"""
            import os, socket
            for host in ("127.0.0.1", "10.0.2.2"):
                try:
                    socket.create_connection((host, {port}), timeout=3).close()
                    print("reached", host)
                except OSError as exc:
                    print("refused", host, type(exc).__name__)
            print("own", os.environ["MLFLOW_TRACKING_URI"].endswith(":{port}"))
        """
        reporter = ListReporter()
        run, inputs = code_job(settings, "host-port", script)
        code_trainer.train(run, inputs, reporter, Recorder().allotment())
        assert printed(reporter, "reached") == []
        assert len(printed(reporter, "refused")) == 2
        assert printed(reporter, "own") == ["False"]
    finally:
        server.shutdown()
        server.server_close()


def test_a_job_without_an_endpoint_runs_as_before(settings, sockets):
    reporter = ListReporter()
    run, inputs = code_job(settings, "plain", PLAIN)
    code_trainer.train(run, inputs, reporter, Allotment())
    assert printed(reporter, "vars") == ["['LABTRAIN_TENSORBOARD_DIR']"]
    assert printed(reporter, "folder") == ["False"]
    assert sockets == []


@pytest.mark.fast
def test_the_spec_adds_the_forwarder_only_with_an_endpoint(tmp_path):
    settings = Settings.from_env_map({"LABTRAIN_HOME": str(tmp_path)})
    run, inputs = code_job(settings, "spec", "print(1)")
    plain = code_trainer._spec(run, inputs, tmp_path / "work", tmp_path / "checkpoints")
    tracked = code_trainer._spec(
        run, inputs, tmp_path / "work", tmp_path / "checkpoints", None, tmp_path / "tracking", RUN_ID
    )
    assert plain.argv == code_trainer.program(run)
    assert tracked.argv[-len(plain.argv) :] == plain.argv
    assert tracked.argv[1:7] == [
        "-I",
        "-S",
        "/opt/labtrain/labtrain_job/forwarder.py",
        "--socket",
        "/run/labtrain/tracking.sock",
        "--",
    ]
    assert "MLFLOW_RUN_ID" not in plain.env and tracked.env["MLFLOW_RUN_ID"] == RUN_ID
    assert "MLFLOW_TRACKING_URI" not in tracked.env  # the forwarder sets it, with the port it holds
    assert [m.target for m in tracked.mounts if m not in plain.mounts] == ["/run/labtrain"]
    assert tracked.limits.max_processes == plain.limits.max_processes + 1  # the forwarder's own
