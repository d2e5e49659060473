"""A model a job left behind, loaded once in a process of its own before it becomes a model:
what the worker (root, holding the database's credentials) must never load itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.core.config import Settings
from service.core.errors import ServiceError
from service.serving.pool import predictor_reference
from service.serving.process import ModelProcess, ProcessLimits


class ModelRefused(Exception):
    """The model cannot be served: the message says why."""


def check_model(settings: Settings, predictor: Any, fields: dict[str, Any], path: Path) -> None:
    server = ModelProcess(predictor_reference(predictor), fields, path, ProcessLimits.from_settings(settings))
    try:
        server.start()
    except ServiceError as exc:
        raise ModelRefused(exc.message) from None
    finally:
        server.close()
