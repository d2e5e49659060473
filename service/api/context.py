"""What every request handler reaches: the settings, the database, the models' processes, the
rate limits and the dispatcher's rule for new jobs of the app serving it."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from functools import cached_property

from flask import current_app

from service.core.broker import make_request_sender
from service.core.config import Settings
from service.core.db import Database
from service.dispatcher import Dispatcher
from service.lab.rate_limits import RateLimits
from service.serving.pool import ModelServers


@dataclass
class Services:
    settings: Settings
    db: Database
    models: ModelServers
    rate_limits: RateLimits

    @cached_property
    def arrivals(self) -> Dispatcher:
        """The dispatcher's rule for a job just submitted (jobs.submit), with a broker of its own:
        made on first use, in the process that serves (after gunicorn's fork)."""
        name = f"api@{socket.gethostname()}"
        return Dispatcher(self.settings, make_request_sender(self.settings), name=name, slurm=False)


def services() -> Services:
    return current_app.extensions["labtrain"]
