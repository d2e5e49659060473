"""The baseline of bench/api_request_cpu.py: its folder is put first on the PYTHONPATH of the
deployment it starts, so Python imports this at start-up in each of its processes, and the API's
uvicorn workers parse HTTP with h11 (pure Python), as before httptools was a dependency. Does
nothing in a process that is not the API's (`labtrain api`, or `labtrain up`, which starts it)."""

import sys

if "api" in sys.argv or "up" in sys.argv:
    from service.cli import gunicorn_app

    gunicorn_app.ApiWorker.CONFIG_KWARGS = {**gunicorn_app.ApiWorker.CONFIG_KWARGS, "http": "h11"}
