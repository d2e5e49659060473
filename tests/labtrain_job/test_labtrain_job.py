"""The module a student's script imports: inside a job it writes one JSON line per report to
its pipe; on a laptop every call works and does nothing harmful."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import labtrain_job

pytestmark = pytest.mark.fast
ROOT = Path(labtrain_job.__file__).resolve().parents[1]


def run(code: str, cwd: Path, env: dict[str, str], pass_fds=()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **env},
        pass_fds=pass_fds,
    )


def test_on_a_laptop_reports_are_printed_and_folders_are_local(tmp_path):
    done = run(
        "import labtrain_job as j; j.report(epoch=1, loss=0.5); print(j.outputs_dir(), j.checkpoint_dir(), "
        "j.dataset_path(), j.in_job())",
        tmp_path,
        {},
    )
    assert done.returncode == 0, done.stderr
    assert '[labtrain_job] {"metrics":{"loss":0.5},"epoch":1}' in done.stderr
    assert done.stdout.split() == ["outputs", "checkpoints", "None", "False"]
    assert (tmp_path / "outputs").is_dir() and (tmp_path / "checkpoints").is_dir()


def test_in_a_job_each_report_is_one_line_on_the_pipe(tmp_path):
    read_end, write_end = os.pipe()
    code = (
        "import labtrain_job as j, numpy as np; j.report(epoch=2, loss=np.float32(0.25), accuracy=0.9, "
        "note='text is dropped', bad=float('nan')); j.report(final=1.0); print(j.in_job())"
    )
    done = run(
        code, tmp_path, {"JOB_EVENTS_FD": str(write_end), "JOB_OUTPUTS_DIR": str(tmp_path / "o")}, pass_fds=(write_end,)
    )
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        lines = [json.loads(line) for line in pipe]
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr
    assert lines == [{"metrics": {"loss": 0.25, "accuracy": 0.9}, "epoch": 2}, {"metrics": {"final": 1.0}}]


def test_a_closed_pipe_does_not_break_the_script(tmp_path):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the worker stopped reading: the job is ending
    done = run(
        "import labtrain_job as j; j.report(epoch=1, loss=1.0); print('still fine')",
        tmp_path,
        {"JOB_EVENTS_FD": str(write_end)},
        pass_fds=(write_end,),
    )
    os.close(write_end)
    assert done.returncode == 0 and done.stdout.strip() == "still fine", done.stderr
