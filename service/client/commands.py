"""The client commands, for `labtrain` to register (service/cli.py)."""

from __future__ import annotations

from service.client.job_commands import cancel, jobs, logs, status, submit, watch
from service.client.model_commands import download, predict
from service.client.server_commands import algorithms, login, queue

COMMANDS = [login, submit, jobs, status, watch, logs, cancel, predict, download, queue, algorithms]
