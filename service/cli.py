"""The `labtrain` command: run the service's processes and administer it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import click

from service import logs
from service.config import Settings
from service.cli_admin import admin
from service.cli_users import users
from service.client.commands import COMMANDS as CLIENT_COMMANDS


@click.group()
def main() -> None:
    """labtrain: a training service for a machine-learning lab."""


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations to the configured database."""
    from service.migrate import upgrade

    settings = Settings.from_env()
    settings.ensure_dirs()
    upgrade(settings.database_url)
    click.echo("database is up to date", err=True)


main.add_command(users)
main.add_command(admin)
for _command in CLIENT_COMMANDS:  # login, submit, jobs, watch, ...: the API's client side
    main.add_command(_command)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", "processes", default=2, show_default=True, type=int, help="gunicorn processes")
@click.option("--threads", default=8, show_default=True, type=int,
              help="threads per process (an open event stream holds one)")
def api(host: str, port: int, processes: int, threads: int) -> None:
    """Serve the HTTP API with gunicorn."""
    from service.server import serve

    serve(host, port, processes, threads)


@main.command()
@click.option("--queues", default="cpu", show_default=True, help="comma-separated: cpu, gpu")
@click.option("--concurrency", default=None, type=int, help="jobs at once (default: CPU cores, 1 on gpu)")
@click.option("--name", default=None, help="worker name (default: queues@host)")
def worker(queues: str, concurrency: int | None, name: str | None) -> None:
    """Run a Celery worker that trains jobs from the given queues."""
    from workers.celery_app import run_worker

    queue_list = [q.strip() for q in queues.split(",") if q.strip()]
    if concurrency is None:
        concurrency = 1 if "gpu" in queue_list else os.cpu_count() or 1
    run_worker(Settings.from_env(), queue_list, concurrency, name)


@main.command()
def dispatcher() -> None:
    """Release queued jobs to workers by fair share; re-queue jobs whose worker was lost."""
    import threading

    from service.dispatch import run_forever

    settings = Settings.from_env()
    logs.configure(settings.log_format)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run_forever(settings, stop)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--concurrency", default=None, type=int, help="CPU worker processes (default: up to 2)")
def up(host: str, port: int, concurrency: int | None) -> None:
    """Set up and start everything: database, admin user, dispatcher, worker and API."""
    from service.broker import declare_queues, make_celery
    from service.migrate import upgrade

    settings = Settings.from_env()
    settings.ensure_dirs()
    upgrade(settings.database_url)
    token = _ensure_local_admin(settings)
    declare_queues(make_celery(settings))

    concurrency = concurrency or min(2, os.cpu_count() or 1)
    command = [sys.executable, "-m", "service"]
    children = [
        subprocess.Popen([*command, "dispatcher"]),
        subprocess.Popen([*command, "worker", "--queues", "cpu", "--concurrency", str(concurrency)]),
        subprocess.Popen([*command, "api", "--host", host, "--port", str(port)]),
    ]
    click.echo(f"labtrain is starting on http://{host}:{port}\n"
               f"  database: {_safe_url(settings.database_url)}\n  broker:   {_safe_url(settings.broker_url)}\n"
               f"  admin token (user 'local', also in {settings.home / 'token'}):\n{token}", err=True)
    _supervise(children)


def _ensure_local_admin(settings: Settings) -> str:
    """The `local` admin's token: created on first start, kept in $LABTRAIN_HOME/token."""
    from service.users import create_user, find_user, rotate_token

    token_file = settings.home / "token"
    with _database(settings).session() as session:
        user = find_user(session, "local")
        if user is None:
            _user, token = create_user(session, "local", admin=True)
        elif token_file.exists():
            return token_file.read_text().strip()
        else:
            token = rotate_token(session, user)
    token_file.touch(mode=0o600)
    token_file.write_text(token + "\n")
    return token


def _supervise(children: list[subprocess.Popen]) -> None:
    """Wait until a child exits or we are told to stop; then stop all children."""
    stopping = False

    def _stop(_signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.2)
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + 20
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
    failed = [c for c in children if c.returncode not in (0, -signal.SIGTERM)]
    sys.exit(1 if failed and not stopping else 0)


def _database(settings: Settings | None = None):
    from service.db import Database

    return Database((settings or Settings.from_env()).database_url)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url
