"""A code job's ./outputs is its outputs_dir(): what a script or a notebook writes to outputs/
where it starts becomes the job's artifacts, under the same caps and with links and special
files left behind as ever; the program's link to it can be swapped for a link out, and nothing
of the host comes back. And a job runs from an install reached through a link.

Real sandboxes (bubblewrap and cgroups), the code trainer driven in process; not in the fast
tier."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from service.core import storage
from service.core.config import Settings
from tests.support.code_trainer import code_job, sandbox_settings
from tests.support.trainers import ListReporter
from workers.trainers import code as code_trainer
from workers.trainers.base import Allotment, JobFailed

TUTORIAL = """
    import os, pathlib, labtrain_job
    pathlib.Path("outputs/tutorial.txt").write_text("relative")  # what tutorials and Colab do
    (labtrain_job.outputs_dir() / "helper.txt").write_text("outputs_dir")
    os.makedirs("outputs/plots", exist_ok=True)
    with open("outputs/plots/curve.csv", "w") as f:
        f.write("1,2\\n")
    print("same folder:", os.path.samefile("outputs", labtrain_job.outputs_dir()))
"""

HOSTILE = """
    import os
    os.symlink("/etc/hostname", "outputs/host_file")  # links out of outputs/, by both names
    os.symlink("/", "outputs/root")
    os.symlink("..", "outputs/up")
    os.mkfifo("outputs/pipe")
    with open("outputs/kept.txt", "w") as f:
        f.write("kept")
"""

RELINKED = """
    import os
    os.unlink("outputs")
    os.symlink("/etc", "outputs")  # ./outputs now names a host folder
    print("relinked:", sorted(os.listdir("outputs"))[:3])
"""


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    return sandbox_settings(tmp_path_factory.mktemp("code-outputs"))


@pytest.fixture(params=["sandbox", "unsandboxed"])
def each_mode(request, settings) -> Settings:
    return settings if request.param == "sandbox" else dataclasses.replace(settings, code_sandbox="off")


def artifacts(settings: Settings, name: str) -> dict[str, str]:
    """What the API would list for job-<name>: every entry of its outputs folder, by lstat."""
    folder = storage.job_outputs_dir(settings, f"job-{name}")
    found = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_dir() or path.is_symlink():
            kind = "file" if path.is_file() and not path.is_symlink() else "other"
            found[str(path.relative_to(folder))] = path.read_text() if kind == "file" else kind
    return found


def test_what_a_script_writes_to_its_own_outputs_folder_becomes_the_jobs_artifacts(each_mode, tmp_path):
    name = f"tutorial-{each_mode.code_sandbox}"
    reporter = ListReporter()
    files = {"train.py": textwrap.dedent(TUTORIAL), "outputs/from-my-laptop.txt": "an earlier run's"}
    run, inputs = code_job(each_mode, name, files=files)
    result = code_trainer.train(run, inputs, reporter, Allotment(checkpoint_dir=tmp_path))
    assert "same folder: True" in reporter.printed()
    assert artifacts(each_mode, name) == {
        "helper.txt": "outputs_dir",
        "plots/curve.csv": "1,2\n",
        "tutorial.txt": "relative",
    }  # and not what the upload held in its own outputs/
    assert result.result["artifacts"] == 3


def test_links_and_pipes_in_outputs_stay_behind(settings, tmp_path):
    run, inputs = code_job(settings, "hostile-outputs", HOSTILE)
    result = code_trainer.train(run, inputs, ListReporter(), Allotment(checkpoint_dir=tmp_path))
    assert artifacts(settings, "hostile-outputs") == {"kept.txt": "kept"}
    assert result.result["artifacts"] == 1


def test_outputs_swapped_for_a_link_to_a_host_folder_brings_nothing_of_the_host(settings, tmp_path):
    reporter = ListReporter()
    run, inputs = code_job(settings, "relinked-outputs", RELINKED)
    result = code_trainer.train(run, inputs, reporter, Allotment(checkpoint_dir=tmp_path))
    assert "relinked:" in reporter.printed()  # it did swap the link
    assert artifacts(settings, "relinked-outputs") == {} and result.result["artifacts"] == 0


def test_a_file_past_the_outputs_cap_in_outputs_fails_the_job(settings, tmp_path):
    small = dataclasses.replace(settings, max_outputs_mb=2)
    script = """
        with open("outputs/big.bin", "wb") as f:
            f.write(b"x" * 3 * 1024 * 1024)
    """
    run, inputs = code_job(small, "big-outputs", script)
    with pytest.raises(JobFailed) as failed:
        code_trainer.train(run, inputs, ListReporter(), Allotment(checkpoint_dir=tmp_path))
    assert failed.value.code == "outputs_limit_exceeded" and "2 MB" in failed.value.message


def test_a_notebook_in_a_folder_writes_to_outputs_beside_it(settings, tmp_path):
    book = new_notebook(cells=[new_code_cell('with open("outputs/cell.txt", "w") as f:\n    f.write("from a cell")')])
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    files = {"week3/explore.ipynb": nbformat.writes(book)}
    run, inputs = code_job(settings, "notebook-outputs", files=files, entrypoint="week3/explore.ipynb")
    result = code_trainer.train(run, inputs, ListReporter(), Allotment(checkpoint_dir=tmp_path))
    found = artifacts(settings, "notebook-outputs")
    assert found["cell.txt"] == "from a cell" and "explore.ipynb" in found  # beside the executed notebook
    assert result.result["artifacts"] == 2


LINKED_RUN = """
import json, sys
from pathlib import Path
from tests.support.code_trainer import code_job, sandbox_settings
from tests.support.trainers import ListReporter
from workers.trainers import Allotment, code as code_trainer

settings = sandbox_settings(Path(sys.argv[1]))
reporter = ListReporter()
run, inputs = code_job(settings, "linked", "import sys, numpy\\nprint('ran by', sys.executable)\\n")
result = code_trainer.train(run, inputs, reporter, Allotment(checkpoint_dir=Path(sys.argv[1]) / "checkpoints"))
print(json.dumps({"prefix": sys.prefix, "result": result.result, "printed": reporter.printed()}))
"""


def test_a_code_job_runs_from_an_install_reached_through_a_link(settings, tmp_path):
    real = Path(sys.prefix).resolve()
    (tmp_path / "current").symlink_to(real)  # a deploy's current -> release-N
    linked = tmp_path / "current" / "bin" / Path(sys.executable).name
    home = tmp_path / "home"
    home.mkdir()
    ran = subprocess.run(
        [str(linked), "-c", LINKED_RUN, str(home)],
        cwd=Path(__file__).parents[3],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    seen = json.loads(ran.stdout.strip().splitlines()[-1])
    assert seen["prefix"] == str(tmp_path / "current")  # the worker's Python did start through the link
    assert seen["result"]["exit_code"] == 0, seen
    assert f"ran by {real / 'bin' / Path(sys.executable).name}" in seen["printed"]
