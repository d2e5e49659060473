"""The service's processes: `labtrain api`, `dispatcher`, `up` (all of them on one machine)
and `db upgrade`. `labtrain worker` is in service/cli/worker.py."""

from __future__ import annotations

import os
import signal
import sys
import threading

import click
from sqlalchemy.engine import make_url

from service.cli.gunicorn_app import serve
from service.cli.supervisor import Child, Supervisor
from service.core import logs
from service.core.broker import declare_queues, make_celery
from service.core.config import Settings
from service.core.db import Database
from service.core.migrate import upgrade
from service.data.fetch import install_subset
from service.dispatcher import run_forever
from service.lab.users import create_user, find_user, rotate_token


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations to the configured database."""
    settings = Settings.from_env()
    settings.ensure_dirs()
    upgrade(settings.database_url)
    click.echo("database is up to date", err=True)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", "processes", default=2, show_default=True, type=int, help="gunicorn processes")
@click.option(
    "--threads",
    default=8,
    show_default=True,
    type=int,
    help="threads per process for the Flask routes (open event streams take none)",
)
def api(host: str, port: int, processes: int, threads: int) -> None:
    """Serve the HTTP API with gunicorn."""
    serve(host, port, processes, threads)


@click.command()
def dispatcher() -> None:
    """Release queued jobs to workers by fair share; re-queue jobs whose worker was lost."""
    settings = Settings.from_env()
    logs.configure(settings.log_format)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run_forever(settings, stop)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--concurrency", default=None, type=int, help="CPU worker processes (default: up to 2)")
def up(host: str, port: int, concurrency: int | None) -> None:
    """Set up and start everything: database, admin user, dispatcher, worker and API.
    A process that dies is started again; Ctrl-C (or SIGTERM) stops them all."""
    settings = Settings.from_env()
    settings.ensure_dirs()
    install_subset(settings.data_dir)  # before the API and the worker start: mnist, as its subset
    logs.configure(settings.log_format)
    upgrade(settings.database_url)
    token = _ensure_local_admin(settings)
    declare_queues(make_celery(settings))

    concurrency = concurrency or min(2, os.cpu_count() or 1)
    command = [sys.executable, "-m", "service"]
    supervisor = Supervisor(
        [
            Child("dispatcher", [*command, "dispatcher"]),
            Child("worker", [*command, "worker", "--queues", "cpu", "--concurrency", str(concurrency)]),
            Child("api", [*command, "api", "--host", host, "--port", str(port)]),
        ]
    )
    click.echo(
        f"labtrain is starting on http://{host}:{port}\n"
        f"  database: {_safe_url(settings.database_url)}\n  broker:   {_safe_url(settings.broker_url)}\n"
        f"  admin token (user 'local', also in {settings.home / 'token'}):\n{token}",
        err=True,
    )
    supervisor.run()


def _ensure_local_admin(settings: Settings) -> str:
    """The `local` admin's token: created on first start, kept in $LABTRAIN_HOME/token."""
    token_file = settings.home / "token"
    database = Database(settings.database_url)
    try:
        with database.session() as session:
            user = find_user(session, "local")
            if user is None:
                _user, token = create_user(session, "local", admin=True)
            elif token_file.exists():
                return token_file.read_text().strip()
            else:
                token = rotate_token(session, user)
    finally:
        database.dispose()
    token_file.touch(mode=0o600)
    token_file.write_text(token + "\n")
    return token


def _safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: show it as it is
        return url
