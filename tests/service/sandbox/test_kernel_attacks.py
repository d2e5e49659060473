"""Attacks on the kernel's shared state, each a real job in a real sandbox on a real worker
(the deployment of test_escapes.py): keyrings, new namespaces, what mountinfo tells, open
files. Each has a control that shows the same code does see or do it outside the sandbox,
and real workloads (PyTorch's data loader workers, a notebook's kernel) still run under the
seccomp filter."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

import labtrain_job
from service.sandbox import box
from tests.support.labs import ATTACK, ATTACKED_LAB

LAB = ATTACKED_LAB  # the deployment of test_escapes.py
SECRET = f"worker-secret-{uuid.uuid4().hex}"
KEYCTL = {"x86_64": 250, "aarch64": 219}[os.uname().machine]
ADD_KEY = {"x86_64": 248, "aarch64": 217}[os.uname().machine]
KEYCTL_JOIN_SESSION_KEYRING, KEYCTL_INVALIDATE, SESSION_KEYRING = 1, 21, -3
REFUSED = "EPERM"


def _syscall(*args) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    answer = libc.syscall(*(ctypes.c_long(a) if isinstance(a, int) else a for a in args))
    assert answer >= 0, os.strerror(ctypes.get_errno())
    return answer


@pytest.fixture(scope="module", autouse=True)
def worker_session_secret():
    """A secret key in this process's session keyring, made before the deployment starts: its
    worker inherits this session, as a worker started from a logged-in shell would."""
    _syscall(KEYCTL, KEYCTL_JOIN_SESSION_KEYRING, None)  # a session of this module's own
    payload = b"the worker's secret"
    key = _syscall(ADD_KEY, b"user", SECRET.encode(), payload, len(payload), SESSION_KEYRING)
    yield
    _syscall(KEYCTL, KEYCTL_INVALIDATE, key)


def outside(tmp_path: Path, *args: str, before: tuple[str, ...] = ()) -> dict:
    """attack.py run here, as a plain process of this session (the control)."""
    env = {**os.environ, "JOB_OUTPUTS_DIR": str(tmp_path), "PYTHONPATH": str(Path(labtrain_job.__file__).parents[1])}
    subprocess.run([*before, sys.executable, str(ATTACK), *args], env=env, check=True, timeout=60)
    return json.loads((tmp_path / "result.json").read_text())


def keys_visible_to(uid: int) -> str:
    """/proc/keys as `uid` sees it: every key it may view, its user keyring's included."""
    drop = ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups"] if uid else []
    return subprocess.run([*drop, "cat", "/proc/keys"], capture_output=True, text=True, check=True).stdout


def test_keyrings_are_out_of_reach_and_nothing_is_left_in_them(lab, tmp_path):
    left = f"left-by-a-job-{uuid.uuid4().hex}"
    job = lab.job("keyrings", SECRET, left)
    assert job["status"] == "succeeded", job["error"]
    seen = lab.result(job)
    assert seen == dict.fromkeys(("session", "user", "request", "add_session", "add_user", "found_left"), REFUSED)
    assert left not in keys_visible_to(0) and left not in keys_visible_to(box.SANDBOX_UID)
    lab.next_job_succeeds()

    control = outside(tmp_path, "keyrings", SECRET, "")  # the same reads, outside: the secret is there
    assert SECRET in control["session"] and isinstance(control["request"], int), control


def test_a_sandbox_starts_with_an_empty_session_keyring_of_its_own(tmp_path):
    """The launcher's helper alone (without the filter, which refuses the calls anyway)."""
    helper = (sys.executable, "-I", "-S", str(box.SESSION_KEYRING))
    inside = outside(tmp_path, "keyrings", SECRET, "", before=helper)
    assert inside["session"] == [] and inside["request"] == "ENOKEY", inside
    assert SECRET in outside(tmp_path, "keyrings", SECRET, "")["session"]


def test_no_namespace_can_be_made_inside(lab, tmp_path):
    job = lab.job("userns")
    assert job["status"] == "succeeded", job["error"]
    seen = lab.result(job)
    assert seen["unshare"] == REFUSED and seen["unshare_tool"] != 0, seen
    assert set(seen["namespaces"].values()) == {REFUSED}, seen
    lab.next_job_succeeds()

    control = outside(tmp_path, "userns")
    assert control["unshare"] == "created" and control["unshare_tool"] == 0, control


# The mounts whose source still lies in the artifact store: a built-in table, which the worker
# caches in artifacts/cache/datasets. A bind mount shows its source's path on its filesystem
# (/job, a filesystem of its own, shows only "/").
STILL_NAMED = {"/data/iris.csv"}


def mounts_naming(mountinfo: str, folder: Path) -> set[str]:
    """The mount points of the lines of /proc/self/mountinfo that name `folder`."""
    return {line.split()[4] for line in mountinfo.splitlines() if str(folder) in line}


def test_mountinfo_names_the_artifact_store_only_for_the_jobs_own_mounts(lab):
    job = lab.job("mountinfo", dataset="iris")
    assert job["status"] == "succeeded", job["error"]
    named = mounts_naming(lab.result(job)["mountinfo"], lab.home / "artifacts")
    assert named <= STILL_NAMED, named


@pytest.mark.xfail(strict=True, reason=f"{sorted(STILL_NAMED)} are bind mounts from the artifact store")
def test_mountinfo_names_no_part_of_the_artifact_store(lab):
    seen = lab.result(lab.job("mountinfo", dataset="iris"))
    assert mounts_naming(seen["mountinfo"], lab.home / "artifacts") == set()


def test_open_files_stop_at_the_limit(lab):
    job = lab.job("files")
    assert job["status"] == "succeeded", job["error"]
    seen = lab.result(job)
    assert seen["error"] == "EMFILE" and 1000 < seen["opened"] < 1024, seen
    lab.next_job_succeeds()


def test_pytorch_data_loader_workers_run_under_the_filter(lab):
    job = lab.job("dataloader", resources={"memory_mb": 2000}, timeout=300)
    assert job["status"] == "succeeded", job["error"]
    assert lab.result(job) == {"sum": float(sum(range(64)))}


def test_a_notebooks_kernel_runs_under_the_filter(lab):
    """nbclient talks to its kernel over TCP on the sandbox's own loopback."""
    book = new_notebook(cells=[new_code_cell("answer = 6 * 7"), new_code_cell("print('answer', answer)")])
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    upload = lab.client.post("/api/v1/sources", files={"file": ("check.ipynb", nbformat.writes(book).encode())})
    assert upload.status_code == 201, upload.text
    spec = {"code": {"source": upload.json()["id"]}, "resources": {"memory_mb": 1500}}
    created = lab.client.post("/api/v1/jobs", json=spec)
    assert created.status_code == 201, created.text
    job = lab.client.wait_for(created.json()["id"], timeout=300)
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["notebook"]["cells"] == 2
