"""Running the API under gunicorn from our own command line (`labtrain api`).

The API's package is imported only in each gunicorn process, once serve() has set
PROMETHEUS_MULTIPROC_DIR: prometheus_client fixes its multi-process mode when it is first
imported, so nothing may import it (nor service.api, which does) before then.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

from gunicorn.app.base import BaseApplication

from service.core import logs
from service.core.config import Settings


class _GunicornApp(BaseApplication):
    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from service.api import create_app  # here, not at the top: see the module's docstring

        settings = Settings.from_env()
        if settings.log_format == "json":  # gunicorn's own loggers too: every line one JSON object
            for name in ("", "gunicorn.error", "gunicorn.access"):
                logs.use_format(logging.getLogger(name).handlers, "json")
        logs.configure(settings.log_format)
        return create_app(settings)


def _metrics_dir() -> None:
    """Each gunicorn process keeps its HTTP metrics in files here; a scrape adds them up.
    The folder is emptied at start, since the samples of a previous run are stale."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="labtrain-metrics-")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder


def _child_exit(_server, worker) -> None:
    from prometheus_client import multiprocess  # not at the top: see the module's docstring

    multiprocess.mark_process_dead(worker.pid)


def serve(host: str, port: int, processes: int, threads: int) -> None:
    _metrics_dir()
    _GunicornApp(
        {
            "child_exit": _child_exit,
            "bind": f"{host}:{port}",
            "workers": processes,
            "threads": threads,
            "worker_class": "gthread",
            "timeout": 120,
            "accesslog": "-",
            "errorlog": "-",
        }
    ).run()
