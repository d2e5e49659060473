"""`labtrain users ...`: accounts and their tokens. A token is printed once, alone on stdout
(so scripts can capture it); the database keeps only its hash."""

from __future__ import annotations

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.core import queues
from service.core.config import Settings
from service.core.db import one_session
from service.core.orm import User
from service.jobs.limits import (
    LIMIT_NAMES,
    QUEUE_LIMIT,
    effective_limits,
    queue_overrides,
    running_limit_and_source,
    set_limits,
)
from service.lab.users import create_user, find_user, rotate_token

MAX_NAME = 64  # the width of users.name


@click.group()
def users() -> None:
    """User accounts and their tokens."""


def _session():
    return one_session(Settings.from_env().database_url)


def _existing(session: Session, name: str) -> User:
    user = find_user(session, name)
    if user is None:
        raise click.ClickException(f"no user named {name!r}; `labtrain users list` shows them")
    return user


@users.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Let the user see and act on every job.")
def users_create(name: str, admin: bool) -> None:
    """Create a user and print its token (alone on stdout, shown only this once)."""
    if not name or len(name) > MAX_NAME or not name.isprintable() or name != name.strip():
        raise click.ClickException(
            f"a user name is 1 to {MAX_NAME} printable characters, without leading or trailing spaces"
        )
    with _session() as session:
        if find_user(session, name) is not None:
            raise click.ClickException(f"user {name!r} exists already")
        _user, token = create_user(session, name, admin=admin)
    click.echo(token)


@users.command("list")
def users_list() -> None:
    """List users."""
    with _session() as session:
        for user in session.scalars(select(User).order_by(User.name)):
            flags = ",".join(f for f, on in (("admin", user.is_admin), ("disabled", user.disabled)) if on)
            click.echo(f"{user.name}\t{flags or '-'}\t{user.created_at:%Y-%m-%d}")


@users.command("token")
@click.argument("name")
@click.option("--rotate", is_flag=True, help="Replace the token with a new one; the old one stops working.")
def users_token(name: str, rotate: bool) -> None:
    """Replace NAME's token (--rotate) and print the new one alone on stdout."""
    with _session() as session:
        user = _existing(session, name)
        if not rotate:
            raise click.ClickException(
                "tokens are stored hashed and cannot be shown again; "
                f"`labtrain users token {name} --rotate` prints a new one and ends the old one"
            )
        token = rotate_token(session, user)
        disabled = user.disabled
    click.echo(token)
    if disabled:
        click.echo(
            f"note: {name!r} is disabled; the new token works once `labtrain users enable {name}` runs", err=True
        )


@users.command("disable")
@click.argument("name")
def users_disable(name: str) -> None:
    """Stop NAME's token from working (its jobs and models are kept)."""
    _set_disabled(name, True)


@users.command("enable")
@click.argument("name")
def users_enable(name: str) -> None:
    """Let a disabled user's token work again."""
    _set_disabled(name, False)


def _set_disabled(name: str, disabled: bool) -> None:
    with _session() as session:
        user = _existing(session, name)
        changed = user.disabled != disabled
        user.disabled = disabled
    state = "disabled" if disabled else "enabled"
    click.echo(f"user {name!r} {'is now' if changed else 'was already'} {state}", err=True)


@users.command("limits")
@click.argument("name")
@click.option("--max-running-cpu", type=int, help="running jobs on the cpu queue")
@click.option("--max-running-gpu", type=int, help="running jobs on the gpu queue")
@click.option("--max-queued", type=int, help="jobs waiting at once; one more is refused with 429")
@click.option("--max-run-time-s", type=int, help="seconds a job may run before it fails")
@click.option("--max-memory-mb", type=int, help="memory a code job may ask for (resources.memory_mb)")
@click.option("--max-cpus", type=int, help="CPUs a code job may ask for (resources.cpus)")
@click.option("--storage-quota-mb", type=int, help="MB the user's data sets, sources, jobs and models may take")
@click.option(
    "--max-running-queue",
    "queue_limits",
    multiple=True,
    metavar="QUEUE=N",
    help="running jobs on a named queue (LABTRAIN_QUEUES), over its own max_running; QUEUE=default drops it",
)
@click.option("--reset", is_flag=True, help="drop this user's overrides: the configured defaults apply")
@click.option("--by", "actor", default="admin", show_default=True, help="who makes the change (audit log)")
def users_limits(name: str, reset: bool, actor: str, queue_limits: tuple[str, ...], **values: int | None) -> None:
    """Show a user's limits, or override them (recorded in the audit log and the user's jobs)."""
    settings = Settings.from_env()
    per_queue = {f"{QUEUE_LIMIT}{queue}": value for queue, value in map(_queue_limit, queue_limits)}
    with _session() as session:
        user = _existing(session, name)
        if reset:
            changes = {k: None for k in [*LIMIT_NAMES, *(f"{QUEUE_LIMIT}{q}" for q in queue_overrides(user))]}
        else:
            changes = {k: v for k, v in values.items() if v is not None} | per_queue
        if changes:
            try:
                set_limits(session, user, changes, actor=actor, settings=settings)
            except ValueError as exc:
                raise click.ClickException(str(exc)) from None
        overridden = user.limits or {}
        for key, value in effective_limits(settings, user).items():
            click.echo(f"{key}\t{value}\t{'override' if key in overridden else 'default'}")
        # Each named queue's running limit for this user, and where it comes from (override, queue, default).
        configured = queues.catalog(settings)
        for queue in configured:
            if queue not in queues.BUILTIN:
                value, source = running_limit_and_source(settings, user.limits, queue)
                click.echo(f"{QUEUE_LIMIT}{queue}\t{value}\t{source}")
        for queue, value in sorted(queue_overrides(user).items()):
            if queue not in configured:  # kept until dropped: the queue may come back
                click.echo(f"{QUEUE_LIMIT}{queue}\t{value}\toverride (queue not configured)")


def _queue_limit(text: str) -> tuple[str, int | None]:
    """QUEUE=N, or QUEUE=default (None: the override dropped)."""
    queue, equals, value = text.partition("=")
    if not equals or not queue or not (value.isdigit() or value == "default"):
        raise click.BadParameter(
            f"{text!r} is not QUEUE=N (e.g. a100=2) or QUEUE=default", param_hint="--max-running-queue"
        )
    return queue, None if value == "default" else int(value)
