"""Runs a notebook as a code job, inside the job's sandbox:

    python -m labtrain_job.notebook train.ipynb --parameters '{"epochs": 3}'

Cell by cell in an IPython kernel of its own (nbclient), as Jupyter would. Before each code
cell the job hears `cell 7/23`; what cells print goes to the job's log as they print it;
`labtrain_job.report()` works from a cell as from a script. Parameters go in a cell after the
one tagged `parameters` (papermill's convention). Colab-only lines get a clear message
(labtrain_job/colab.py). Whatever happens, the executed notebook (every output and figure)
is written to outputs/ (its page is rendered by the worker once the job has ended, never
here); a failing cell fails the job, naming the cell, its first line and the error. Asked to yield (SIGUSR1: preemption), the runner passes the
signal on to the kernel, where `labtrain_job.preempted()` turns True (the Keras callback and
the PyTorch helper checkpoint and stop), runs no further cell, and exits with status 0.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError

import labtrain_job
from labtrain_job.channel import outputs_dir, send

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
STARTUP = "import labtrain_job.colab as _labtrain_colab\n_labtrain_colab.install(get_ipython())\ndel _labtrain_colab\n"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
MAX_LINE = 200


def main(argv: list[str] | None = None) -> int:
    options = _arguments(argv)
    path = Path(options.notebook).resolve()
    notebook = nbformat.read(path, as_version=4)
    inject_parameters(notebook, json.loads(options.parameters))
    _prepare_kernel_environment()
    # The kernel runs in the notebook's folder, as in Jupyter; so does this runner, so that on a
    # laptop the executed notebook lands in the same ./outputs as what its cells save there.
    os.chdir(path.parent)
    runner = _Runner(notebook, path.parent)
    _pass_preemption_on(runner)
    fd = os.environ.get("JOB_EVENTS_FD")
    try:
        # The kernel reports down the job's pipe too (jupyter_client closes other descriptors).
        runner.execute(pass_fds=(int(fd),) if fd else ())
        return 0
    except _Yielded:
        return 0
    except CellExecutionError as exc:
        if labtrain_job.preempted():  # the cell stopped to yield (its checkpoint saved)
            return 0
        runner.failed(_error_text(exc))
        return 1
    except DeadKernelError:
        if labtrain_job.preempted():
            return 0
        runner.failed("the kernel died (it may have run out of memory)")
        return 1
    finally:
        _write_outputs(notebook, path.stem)


class _Yielded(Exception):
    """The job was asked to yield before a cell: no further cell runs."""


def _pass_preemption_on(runner: _Runner) -> None:
    """SIGUSR1 sets preempted() here and goes on to the kernel, where the cells run."""
    sigusr1 = getattr(signal, "SIGUSR1", None)
    if sigusr1 is None or threading.current_thread() is not threading.main_thread():
        return

    def pass_on(signum, frame):
        labtrain_job._on_sigusr1(signum, frame)
        provisioner = getattr(runner.km, "provisioner", None) if runner.km is not None else None
        pid = getattr(provisioner, "pid", None)
        if pid:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(sigusr1, pass_on)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m labtrain_job.notebook")
    parser.add_argument("notebook")
    parser.add_argument("--parameters", default="{}", help="a JSON object of the values to set")
    return parser.parse_args(argv)


def inject_parameters(notebook: Any, parameters: dict[str, Any]) -> None:
    """Papermill's convention: a cell tagged `injected-parameters` after the cell tagged
    `parameters` (or first, without one) sets the values given."""
    if not parameters:
        return
    lines = ["# Parameters given to this job"] + [f"{name} = {value!r}" for name, value in parameters.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": [INJECTED_TAG]})
    cells = notebook.cells
    tagged = [i for i, c in enumerate(cells) if PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])]
    cells.insert(tagged[0] + 1 if tagged else 0, cell)


def _prepare_kernel_environment() -> None:
    """The kernel's IPython runs our startup file (the Colab shims); its files go under /tmp."""
    ipython_dir = Path(os.environ.get("IPYTHONDIR") or "/tmp/ipython")
    startup = ipython_dir / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-labtrain.py").write_text(STARTUP)
    os.environ["IPYTHONDIR"] = str(ipython_dir)
    os.environ.setdefault("JUPYTER_RUNTIME_DIR", "/tmp/jupyter-runtime")
    os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    os.environ.setdefault("MPLCONFIGDIR", "/tmp/matplotlib")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"  # figures into the notebook


class _Runner(NotebookClient):
    """nbclient's client, telling the job which cell runs and echoing outputs to the log."""

    def __init__(self, notebook: Any, folder: Path):
        self.code_cells = [i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and c.source.strip()]
        self.current: int | None = None
        super().__init__(
            notebook,
            timeout=None,  # the job's own time limit applies
            kernel_name="python3",
            resources={"metadata": {"path": str(folder)}},
            record_timing=True,
            on_cell_execute=self._starting,
        )

    def _starting(self, cell: Any, cell_index: int) -> None:
        if labtrain_job.preempted():
            print("--- asked to yield: no further cell runs", flush=True)
            raise _Yielded()
        self.current = cell_index
        number, total = self.position(cell_index)
        line = first_line(cell.source)
        print(f"--- cell {number}/{total}: {line}", flush=True)
        send({"cell": number, "cells": total, "line": line})

    def position(self, cell_index: int) -> tuple[int, int]:
        number = self.code_cells.index(cell_index) + 1 if cell_index in self.code_cells else 0
        return number, len(self.code_cells)

    def output(self, outs, msg, display_id, cell_index):
        content = msg.get("content", {})
        if msg.get("msg_type") == "stream":
            stream = sys.stderr if content.get("name") == "stderr" else sys.stdout
            stream.write(content.get("text", ""))
            stream.flush()
        return super().output(outs, msg, display_id, cell_index)

    def failed(self, error: str) -> None:
        index = self.current if self.current is not None else (self.code_cells[0] if self.code_cells else 0)
        number, total = self.position(index)
        line = first_line(self.nb.cells[index].source) if self.nb.cells else ""
        print(f"cell {number}/{total} failed: {error}", file=sys.stderr, flush=True)
        send({"cell_failed": {"cell": number, "cells": total, "line": line, "error": error[:4000]}})


def first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip():
            return line.strip()[:MAX_LINE]
    return ""


def _error_text(exc: CellExecutionError) -> str:
    """`ZeroDivisionError: division by zero`, as the student's own error reads."""
    name, value = getattr(exc, "ename", ""), getattr(exc, "evalue", "")
    if name:
        return _ANSI.sub("", f"{name}: {value}" if value else name)
    return _ANSI.sub("", str(exc)).strip().splitlines()[-1]


def _write_outputs(notebook: Any, stem: str) -> None:
    nbformat.write(notebook, outputs_dir() / f"{stem}.ipynb")


if __name__ == "__main__":
    sys.exit(main())
