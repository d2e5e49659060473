"""The Python environment a sandbox runs is named by one path: the mounts, PATH and the
interpreter agree, also for an install reached through a link (a deploy's
`current -> release-N`). A real job from such an install: tests/workers/trainers/test_code_outputs.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.sandbox import box
from service.sandbox.cgroups import Limits
from service.sandbox.environment import python_environment

pytestmark = pytest.mark.fast


def a_release(root: Path) -> Path:
    """root/release-1 holding a virtual environment (its bin/python a link to a base interpreter
    elsewhere), and root/current -> release-1, as a deploy lays them out."""
    base = root / "python" / "bin"
    base.mkdir(parents=True)
    (base / "python3.11").write_text("")
    venv_bin = root / "release-1" / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(base / "python3.11")
    (root / "current").symlink_to(root / "release-1")
    return root / "current"


def test_a_linked_install_is_named_by_its_real_path_and_its_interpreter_keeps_its_name(tmp_path):
    current = a_release(tmp_path)
    found = python_environment(
        prefix=str(current / "venv"), base_prefix=str(tmp_path / "python"), executable=str(current / "venv/bin/python")
    )
    real = tmp_path.resolve() / "release-1" / "venv"
    assert found.prefix == real and found.bin == real / "bin"
    # The venv's own interpreter (the link), not the base one it points to: that one would not
    # find the venv's pyvenv.cfg.
    assert found.interpreter == real / "bin" / "python"
    assert found.interpreter.parent == found.bin
    assert found.folders == sorted([tmp_path.resolve() / "python", real])


def test_an_install_without_links_is_named_as_it_is(tmp_path):
    current = a_release(tmp_path)
    real = current.resolve() / "venv"
    found = python_environment(prefix=str(real), base_prefix=str(real), executable=str(real / "bin/python"))
    assert (found.prefix, found.interpreter, found.folders) == (real, real / "bin/python", [real])


def test_the_sandbox_mounts_the_folders_path_and_interpreter_name():
    here = python_environment()
    spec = box.SandboxSpec(
        name="t", workdir=Path("/nowhere"), argv=["true"], cwd="/job", env={}, limits=Limits(1, 1, 1), file_size_limit=1
    )
    assert box.base_env(spec)["PATH"].split(":")[0] == str(here.bin)
    mounted = [Path(m.source) for m in box.python_mounts()]
    assert all(Path(m.source) == Path(m.target) for m in box.python_mounts())
    inside = [here.bin, Path(box.interpreter()).parent]
    # Each is under a mounted folder, or under /usr (bound whole).
    for path in inside:
        assert path.is_relative_to("/usr") or any(path.is_relative_to(folder) for folder in mounted), (path, mounted)
