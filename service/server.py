"""Running the API under gunicorn from our own command line."""
from __future__ import annotations

from gunicorn.app.base import BaseApplication


class _GunicornApp(BaseApplication):
    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from service.api import create_app

        return create_app()


def serve(host: str, port: int, processes: int, threads: int) -> None:
    _GunicornApp({
        "bind": f"{host}:{port}",
        "workers": processes,
        "threads": threads,
        "worker_class": "gthread",
        "timeout": 120,
        "accesslog": "-",
        "errorlog": "-",
    }).run()
