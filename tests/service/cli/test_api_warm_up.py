"""An API process imports what a job's first submit needs as it starts, not at that submit: under
a burst of submits, the job families' spec models (whose schemas pydantic builds as they are
imported, about half a second of CPU) were a process's first work."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.processes import service_env

ROOT = Path(__file__).parents[3]

LOAD = textwrap.dedent(
    """
    import sys, threading
    from service.cli.gunicorn_app import _GunicornApp
    from service.jobs import families

    before = families._loaded
    _GunicornApp({"threads": 2, "workers": 1}).load()  # what each gunicorn process runs as it starts
    for thread in threading.enumerate():
        if thread.name == "warm-up":
            thread.join(120)
    print(before, families._loaded, "sklearn.datasets" in sys.modules)
    """
)


def test_an_api_process_imports_the_job_families_as_it_starts(tmp_path):
    env = {**service_env(tmp_path), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    done = subprocess.run([sys.executable, "-c", LOAD], env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.stdout.split() == ["False", "True", "True"], done.stdout + done.stderr
