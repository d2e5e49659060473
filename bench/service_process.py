"""Starting a labtrain service for a benchmark: PostgreSQL + Redis, or the embedded defaults."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.conftest import free_port
from tests.support.processes import Client, ServiceProcess, run_cli, service_env, start_stack, wait_until_healthy

PG_ADMIN = os.environ.get("LABTRAIN_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("LABTRAIN_BENCH_REDIS", "redis://127.0.0.1:6379/9")


def scratch_database(mode: str, home: Path) -> tuple[str, Callable[[], None] | None]:
    """(url, drop) of a migrated database of its own, with one user, that no service's processes
    read: a PostgreSQL database of its own, or a SQLite file under `home`."""
    home.mkdir(parents=True, exist_ok=True)
    url, drop = (f"sqlite:///{home}/labtrain.db", None) if mode == "embedded" else _postgres_database()
    env = service_env(home, LABTRAIN_DATABASE_URL=url)
    for args in (["db", "upgrade"], ["users", "create", "bench"]):
        done = run_cli(args, env)
        assert done.returncode == 0, done.stderr
    return url, drop


def start_service(mode: str, home: Path, api_workers: int = 2, **extra_env: str):
    """(client, processes, cleanup) for a fresh service of `mode` with its state under `home`."""
    extra_env.setdefault("LABTRAIN_CHECKPOINT_EVERY_S", "30")  # the default, not the tests' every epoch
    port = free_port()
    if mode == "embedded":
        process = ServiceProcess(["up", "--port", str(port)], service_env(home, **extra_env), home / "up.log")
        wait_until_healthy(f"http://127.0.0.1:{port}", [process])
        return Client(f"http://127.0.0.1:{port}", (home / "token").read_text().strip()), [process], None
    url, drop = _postgres_database()
    env = service_env(home, LABTRAIN_DATABASE_URL=url, LABTRAIN_BROKER_URL=REDIS, **extra_env)
    run_cli(["db", "upgrade"], env)
    token = run_cli(["users", "create", "bench"], env).stdout.strip()
    processes = start_stack(env, home, port, ["--queues", "cpu", "--concurrency", "2"], api_workers=api_workers)
    wait_until_healthy(f"http://127.0.0.1:{port}", processes)
    return Client(f"http://127.0.0.1:{port}", token), processes, drop


def _postgres_database() -> tuple[str, Callable[[], None]]:
    """(url, drop) of a new, empty PostgreSQL database."""
    database = f"labtrain_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()

    return PG_ADMIN.rsplit("/", 1)[0] + f"/{database}", drop
