"""What every request handler reaches: the settings, the database, the models' processes and
the rate limits of the app serving it."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from service.core.config import Settings
from service.core.db import Database
from service.lab.rate_limits import RateLimits
from service.serving.pool import ModelServers


@dataclass
class Services:
    settings: Settings
    db: Database
    models: ModelServers
    rate_limits: RateLimits


def services() -> Services:
    return current_app.extensions["labtrain"]
