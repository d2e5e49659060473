"""Starting a labtrain service for a benchmark: PostgreSQL + Redis, or the embedded defaults."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.conftest import free_port
from tests.support.processes import Client, ServiceProcess, run_cli, service_env, start_stack, wait_until_healthy

PG_ADMIN = os.environ.get("LABTRAIN_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("LABTRAIN_BENCH_REDIS", "redis://127.0.0.1:6379/9")


def start_service(mode: str, home: Path, api_workers: int = 2, **extra_env: str):
    """(client, processes, cleanup) for a fresh service of `mode` with its state under `home`."""
    extra_env.setdefault("LABTRAIN_CHECKPOINT_EVERY_S", "30")  # the default, not the tests' every epoch
    port = free_port()
    if mode == "embedded":
        process = ServiceProcess(["up", "--port", str(port)], service_env(home, **extra_env), home / "up.log")
        wait_until_healthy(f"http://127.0.0.1:{port}", [process])
        return Client(f"http://127.0.0.1:{port}", (home / "token").read_text().strip()), [process], None
    database = f"labtrain_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{database}"
    env = service_env(home, LABTRAIN_DATABASE_URL=url, LABTRAIN_BROKER_URL=REDIS, **extra_env)
    run_cli(["db", "upgrade"], env)
    token = run_cli(["users", "create", "bench"], env).stdout.strip()
    processes = start_stack(env, home, port, ["--queues", "cpu", "--concurrency", "2"], api_workers=api_workers)
    wait_until_healthy(f"http://127.0.0.1:{port}", processes)

    def drop():
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()

    return Client(f"http://127.0.0.1:{port}", token), processes, drop
