"""A real labtrain API (`labtrain api`, one worker process, PostgreSQL) for MLflow's own client,
and that client run in a process of its own against it, as a student's laptop would.

    with mlflow_server(home, make_pg_database(), make_redis_url(), LABTRAIN_STORAGE_QUOTA_MB="2") as server:
        finished = server.run_client("alice", "import mlflow; ...")
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port
from tests.support.processes import ServiceProcess, create_user_token, deployment_env, wait_until_healthy

USERS = ("alice", "bob")


@dataclass
class MlflowServer:
    home: Path
    env: dict[str, str]  # the deployment's (LABTRAIN_*)
    url: str
    tokens: dict[str, str]  # by user name
    process: ServiceProcess

    def client_env(self, user: str, **more: str) -> dict[str, str]:
        """The environment of MLflow's client logging in as `user` (its token, no retries: an
        error is the answer under test, not something to wait out)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LABTRAIN_"))}
        env.update(
            MLFLOW_TRACKING_URI=self.url,
            MLFLOW_TRACKING_TOKEN=self.tokens[user],
            MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
            MLFLOW_HTTP_REQUEST_TIMEOUT="60",
            MLFLOW_ENABLE_ASYNC_LOGGING="false",
            HOME=str(self.home / f"home-{user}"),  # nothing of the machine's own MLflow settings
        )
        env.update(more)
        return env

    def run_client(self, user: str, script: str, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
        """`script` run by this Python (where mlflow is installed) as `user`, in a folder of its own."""
        workdir = self.home / f"home-{user}"
        workdir.mkdir(exist_ok=True)
        return subprocess.run(
            [sys.executable, "-c", script],
            env=self.client_env(user, **env),
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def log(self) -> str:
        return self.process.output()


@contextmanager
def mlflow_server(
    home: Path, database_url: str, broker_url: str, users: tuple[str, ...] = USERS, **settings: str
) -> Iterator[MlflowServer]:
    """The API of a deployment living in `home`, with `users` made; LABTRAIN_* `settings` on top."""
    env = deployment_env(home, LABTRAIN_DATABASE_URL=database_url, LABTRAIN_BROKER_URL=broker_url, **settings)
    tokens = {name: create_user_token(env, name) for name in users}
    port = free_port()
    process = ServiceProcess(["api", "--port", str(port), "--workers", "1"], env, home / "api.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, [process])
        yield MlflowServer(home, env, url, tokens, process)
    finally:
        process.stop()
