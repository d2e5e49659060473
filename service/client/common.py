"""What every client command shares: the --json flag, the connection, JSON output."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from service.client.api import Api
from service.client.config import current_login


def json_option(command: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON (only JSON on stdout).")(
        command
    )


def connect():
    return Api(current_login())


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False))


def note(text: str) -> None:
    """Messages for people go to stderr, so stdout stays what scripts read."""
    click.echo(text, err=True)
