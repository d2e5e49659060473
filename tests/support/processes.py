"""Starting and stopping real labtrain processes for end-to-end tests."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import requests

from service.client.api import api_session
from service.core.config import Settings
from service.core.db import Database
from service.core.migrate import upgrade
from service.lab.users import create_user
from tests.conftest import free_port

PR_SET_PDEATHSIG = 1  # prctl(2)


class ServiceProcess:
    """`python -m service ARGS` with its output in a log file, stopped on exit. `prefix` runs it
    through another command first (e.g. `ip netns exec NAME` for a second host)."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path, prefix: list[str] = ()):
        self.log_path, self.env = log_path, env
        self._log = open(log_path, "wb")  # noqa: SIM115 (open for the process's life; stop() closes it)
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "service", *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Started from the main thread (a thread's end would count as its parent's death).
            preexec_fn=_stop_with_the_tests if threading.current_thread() is threading.main_thread() else None,
        )
        self._asked = False

    def terminate(self) -> None:
        """Asks it to stop (SIGTERM to its process group), once; stop() waits for it."""
        if self.proc.poll() is None and not self._asked:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self._asked = True

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def _stop_with_the_tests() -> None:
    """In the child before it runs: SIGTERM when the test process dies (killed, say), so that a
    deployment it started never outlives it to take the next session's messages."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_all(processes: list[ServiceProcess]) -> None:
    """Stops a deployment's processes together: all asked first, then each waited for, so a
    worker's warm shutdown (seconds) overlaps the others' instead of following them."""
    for process in processes:
        process.terminate()
    for process in processes:
        process.stop()


def service_env(home: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABTRAIN_")}
    env["LABTRAIN_HOME"] = str(home)
    # Tests submit bursts of jobs; the rate limits have tests of their own.
    env["LABTRAIN_SUBMIT_RATE_LIMIT"] = env["LABTRAIN_PREDICT_RATE_LIMIT"] = ""
    # Tests stop workers between short epochs and expect each epoch's checkpoint.
    env["LABTRAIN_CHECKPOINT_EVERY_S"] = "0"
    env.update(overrides)
    return env


def deployment_env(home: Path, **overrides: str) -> dict[str, str]:
    """The environment of a deployment living in `home`: its data directory holds the MNIST
    subset, and its database (LABTRAIN_DATABASE_URL in `overrides`) is migrated, here, as
    `labtrain db upgrade` does (that command's own tests run it: tests/service/cli/test_users.py)
    without an interpreter to start for each deployment."""
    from tests.support.digit_images import MNIST_8K

    (home / "datasets").mkdir()
    (home / "datasets" / "mnist.npz").symlink_to(MNIST_8K)
    env = service_env(home, **overrides)
    Settings.from_env_map(env).ensure_dirs()
    upgrade(env["LABTRAIN_DATABASE_URL"])
    return env


def create_user_token(env: dict[str, str], name: str, admin: bool = False) -> str:
    """A new user of the deployment and its token, as `labtrain users create` prints it (whose
    own tests run the command: tests/service/cli/test_users.py), made here in a few ms."""
    database = Database(env["LABTRAIN_DATABASE_URL"])
    try:
        with database.session() as session:
            return create_user(session, name, admin=admin)[1]
    finally:
        database.dispose()


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service", *args], env=env, capture_output=True, text=True, timeout=120
    )


def wait_until_healthy(base_url: str, processes: list[ServiceProcess], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            if process.proc.poll() is not None:
                raise RuntimeError(f"process exited early:\n{process.output()[-3000:]}")
        try:
            if requests.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or no worker booted yet
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{base_url} did not become healthy in {timeout}s")


class Client:
    """A tiny HTTP client for a running service."""

    def __init__(self, base_url: str, token: str):
        self.base_url = base_url
        self.session = api_session({"Authorization": f"Bearer {token}"})

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(self.base_url + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.session.post(self.base_url + path, timeout=30, **kwargs)

    def wait_for(self, job_id: str, timeout: float = 90, poll: float = 0.05) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.get(f"/api/v1/jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(poll)
        raise TimeoutError(f"job {job_id} did not finish in {timeout}s: {job}")

    def follow(self, job_id: str, timeout: float = 600) -> dict:
        """Wait for the job's end on its event stream, as `labtrain watch` does (service/client/
        status_stream.py): no polling, so a benchmark takes no CPU from the job it times; then the job."""
        self.wait_for_end(job_id, timeout)
        return self.get(f"/api/v1/jobs/{job_id}").json()

    def wait_for_end(self, job_id: str, timeout: float = 600) -> None:
        """Until the job's event stream ends, which the server ends right after the job's last
        event (follow's first half). Read to its end, as labtrain's StatusStream reads it, the
        stream's connection goes back to the pool for the next request; a response left unread
        would be closed, and the next request would open a connection of its own."""
        headers = {"Accept": "text/event-stream"}
        with self.session.get(
            f"{self.base_url}/api/v1/jobs/{job_id}/events", headers=headers, stream=True, timeout=timeout
        ) as stream:
            for _chunk in stream.iter_content(chunk_size=None):
                pass


def start_stack(
    env: dict[str, str], home: Path, port: int, worker_args: list[str], api_workers: int = 2
) -> list[ServiceProcess]:
    """The processes of a deployment on PostgreSQL + Redis: dispatcher, one worker, API."""
    return [
        ServiceProcess(["dispatcher"], env, home / "dispatcher.log"),
        ServiceProcess(["worker", *worker_args], env, home / f"worker-{len(list(home.glob('worker-*.log')))}.log"),
        ServiceProcess(["api", "--port", str(port), "--workers", str(api_workers)], env, home / "api.log"),
    ]


@dataclass
class Deployment:
    """A running deployment (dispatcher, workers, API) and the token of its user."""

    home: Path
    env: dict[str, str]
    port: int
    token: str
    processes: list[ServiceProcess]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @cached_property
    def client(self) -> Client:
        return Client(self.url, self.token)


@contextmanager
def serving(
    env: dict[str, str],
    home: Path,
    user: str,
    worker_args: list[str],
    more_workers: tuple[list[str], ...] = (),
    kind: type[Deployment] = Deployment,
) -> Iterator[Deployment]:
    """A deployment's processes (dispatcher, a worker and `more_workers`, the API) running, with a
    new user `user`; the processes stop on exit. `kind` may add helpers to what is yielded."""
    token = create_user_token(env, user)
    port = free_port()
    processes = start_stack(env, home, port, worker_args)
    for n, args in enumerate(more_workers, start=2):
        processes.append(ServiceProcess(["worker", *args], env, home / f"worker-more-{n}.log"))
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", processes)
        yield kind(home, env, port, token, processes)
    finally:
        stop_all(processes)
