"""Running the API under gunicorn from our own command line (`labtrain api`): uvicorn
workers, each serving service/api/streams.py's app (Flask on a thread pool, the event streams
as coroutines, so an open stream costs no thread).

The API's package is imported only in each gunicorn process, once serve() has set
PROMETHEUS_MULTIPROC_DIR: prometheus_client fixes its multi-process mode when it is first
imported, so nothing may import it (nor service.api, which does) before then.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading

from gunicorn.app.base import BaseApplication
from uvicorn_worker import UvicornWorker

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
        from service.api.streams import StreamingApp

        settings = Settings.from_env()
        if settings.log_format == "json":  # gunicorn's own loggers too: every line one JSON object
            for name in ("", "gunicorn.error", "gunicorn.access"):
                logs.use_format(logging.getLogger(name).handlers, "json")
        logs.configure(settings.log_format)
        app = StreamingApp(create_app(settings), threads=self.options["threads"])
        threading.Thread(target=_import_validators, name="warm-up", daemon=True).start()
        return app


def _import_validators() -> None:
    """What a job's first submit to this process would import (every job family's spec models,
    whose schemas pydantic builds as they are imported, about half a second of CPU; scikit-learn's
    datasets, about 1 s), imported as the process starts instead: with several processes, each
    one's first job paid for it, and under a burst of submits that was a process's first half
    second of work. A request that needs them meanwhile waits for these imports, not for ones of
    its own."""
    from service.data import tables
    from service.jobs import families

    families.all_families()
    tables.builtin_info("iris")


class ApiWorker(UvicornWorker):
    # The app's startup runs the stream hub; no server header, like gunicorn's own workers. HTTP
    # parsed in C (httptools): a small request costs a fifth less CPU than with h11 (BENCHMARKS.md).
    CONFIG_KWARGS = {"lifespan": "on", "server_header": False, "timeout_graceful_shutdown": 5, "http": "httptools"}


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
            "worker_class": "service.cli.gunicorn_app.ApiWorker",
            "timeout": 120,
            "accesslog": "-",
            "errorlog": "-",
        }
    ).run()
