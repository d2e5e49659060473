"""What every request handler reaches: the settings, the database, the loaded models and
the rate limits of the app serving it."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from service.api.model_cache import ModelCache
from service.core.config import Settings
from service.core.db import Database
from service.lab.rate_limits import RateLimits


@dataclass
class Services:
    settings: Settings
    db: Database
    models: ModelCache
    rate_limits: RateLimits


def services() -> Services:
    return current_app.extensions["labtrain"]
