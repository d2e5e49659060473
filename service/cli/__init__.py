"""The `labtrain` command: run the service's processes, administer it, and use it as a client.

The service's own commands (api, worker, dispatcher, up, db, users, admin) load their
modules only when one of them runs: the client commands students type all day
(`labtrain jobs`, `labtrain watch`) then start without loading the database layers or
the frameworks.
"""

from __future__ import annotations

import importlib

import click

from service.cli.datasets import fetch as fetch_dataset
from service.client.commands import COMMANDS as CLIENT_COMMANDS
from service.client.dataset_commands import datasets as client_datasets

SERVICE_COMMANDS = {
    "api": "service.cli.processes:api",
    "dispatcher": "service.cli.processes:dispatcher",
    "up": "service.cli.processes:up",
    "db": "service.cli.processes:db",
    "worker": "service.cli.worker:worker",
    "users": "service.cli.users:users",
    "admin": "service.cli.admin:admin",
}


class LazyGroup(click.Group):
    """A group whose listed subcommands are imported when asked for (click's documented pattern)."""

    def __init__(self, *args, lazy: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.lazy:
            return super().get_command(ctx, name)
        module, _, attribute = self.lazy[name].partition(":")
        return getattr(importlib.import_module(module), attribute)


@click.group(cls=LazyGroup, lazy=SERVICE_COMMANDS)
def main() -> None:
    """labtrain: a training service for a machine-learning lab."""


for _command in CLIENT_COMMANDS:  # login, submit, jobs, watch, ...: the API's client side
    main.add_command(_command)

# `labtrain datasets fetch` runs on the server (it writes into the data directory); the group
# is the client's. The command's module imports only click: its work is imported when it runs.
client_datasets.add_command(fetch_dataset)
