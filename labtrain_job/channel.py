"""What ties a script to its job (standard library only): the pipe its reports go down, and
the job's folders. On a laptop (no job around) reports are printed and the folders are
./checkpoints and ./outputs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

EVENTS_FD = "JOB_EVENTS_FD"


def in_job() -> bool:
    """Whether this runs as a labtrain job (rather than on a laptop)."""
    return EVENTS_FD in os.environ


def checkpoint_dir() -> Path:
    """A folder kept across the job's attempts: save checkpoints here and, when the job is
    run again after its worker was lost, load the newest one and carry on."""
    return _folder("JOB_CHECKPOINT_DIR", "checkpoints")


def outputs_dir() -> Path:
    """Files written here become the job's artifacts, listed and downloadable once it ends. In a
    job it is also ./outputs where the script starts (a notebook: beside the notebook), so what
    tutorials write to outputs/ is kept too; on a laptop it is ./outputs."""
    return _folder("JOB_OUTPUTS_DIR", "outputs")


def send(line: dict[str, Any]) -> None:
    """One report down the job's pipe (printed on a laptop)."""
    text = json.dumps(line, separators=(",", ":"))
    fd = os.environ.get(EVENTS_FD)
    if fd is None:  # not in a job: show what would have been reported
        print(f"[labtrain_job] {text}", file=sys.stderr)
        return
    try:
        os.write(int(fd), (text + "\n").encode())
    except OSError:  # the worker stopped reading (the job is ending): nothing to do
        pass


def _folder(variable: str, default: str) -> Path:
    path = Path(os.environ.get(variable) or default)
    path.mkdir(parents=True, exist_ok=True)
    return path
