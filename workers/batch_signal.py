"""A signal from the batch system that runs this process's one job (SLURM, service/cli/run_one.py).

SLURM signals every process of a job at once (proctrack): the runner, and the student's program
in its sandbox. What the signal means is decided here, in the runner's own process, at once
(not at the watch's next database read): a yield (preemption, a node going down: checkpoint and
back to the queue), or the end of SLURM's time limit. The handler only sets a plain attribute
(no lock: it may interrupt anything); the job's Allotment and the code job's supervisor read it.
"""

from __future__ import annotations

import os

YIELD, ENDING = "yield", "ending"
_asked: str | None = None


def ask(meaning: str) -> None:
    """From a signal handler: the first meaning stays."""
    global _asked
    if _asked is None:
        _asked = meaning


def asked() -> str | None:
    return _asked


def under_batch_system() -> bool:
    """Whether this process is a SLURM job's (its signals reach every process of the job)."""
    return "SLURM_JOB_ID" in os.environ
