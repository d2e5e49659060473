"""`labtrain worker run-one` starts once per SLURM job: what it loads before the job's own trainer
is paid by every job (issue 23). The dispatcher's and the API's libraries stay out of it."""

from __future__ import annotations

import json
import subprocess
import sys

# Celery (the broker's side), Optuna (the search driver's), nbformat (the code family's submit
# check), Flask (the API): none of them runs a job on a node.
NOT_ON_THE_NODE = ("celery", "kombu", "optuna", "nbformat", "flask", "mlflow")


def test_run_one_loads_the_families_without_the_dispatchers_or_the_apis_libraries():
    probe = (
        "import json, sys\n"
        "from service.cli import main\n"
        "main.get_command(None, 'worker').get_command(None, 'run-one')\n"  # as `labtrain worker run-one` resolves it
        "from service.jobs import families\n"
        "families.all_families()\n"  # what the runner's lookup of the job's family loads
        f"print(json.dumps(sorted(m for m in {NOT_ON_THE_NODE!r} if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
