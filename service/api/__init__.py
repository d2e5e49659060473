"""The Flask API: `create_app()` builds it; each module registers its routes with `init_app`."""

from __future__ import annotations

from flask import Flask

from service.api import (
    auth,
    builtin_datasets,
    catalog,
    compare,
    competitions,
    course_budgets,
    course_datasets,
    courses,
    dashboard,
    datasets,
    errors,
    events,
    jobs,
    mlflow,
    mlflow_artifacts,
    models,
    monitoring,
    openapi,
    runs,
    sources,
    uploads,
)
from service.api.context import Services
from service.core import queues as queue_catalog
from service.core.config import Settings
from service.core.db import Database
from service.data.fetch import install_subset
from service.lab.rate_limits import RateLimits
from service.serving.pool import ModelServers


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    settings.ensure_dirs()
    queue_catalog.catalog(settings)  # a mistake in LABTRAIN_QUEUES stops the API at start, naming its key
    install_subset(settings.data_dir)  # mnist works out of the box, as its subset, until fetched
    app = Flask("labtrain")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes
    app.json.sort_keys = False
    app.extensions["labtrain"] = Services(
        settings=settings,
        db=Database(settings.database_url),
        models=ModelServers(settings),
        rate_limits=RateLimits(settings),
    )
    modules = (
        errors,
        monitoring,
        auth,
        jobs,
        events,
        models,
        datasets,
        builtin_datasets,
        sources,
        uploads,
        courses,
        course_budgets,
        course_datasets,
        competitions,
        compare,
        runs,
        mlflow,
        mlflow_artifacts,
        catalog,
        dashboard,
        openapi,
    )
    for module in modules:
        module.init_app(app)
    return app
