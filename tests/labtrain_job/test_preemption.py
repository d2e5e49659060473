"""Preemption and GPU shares on the job's side, fast: SIGUSR1 turns preempted() True (unless
the script handles it itself); a GPU share in the environment holds PyTorch and TensorFlow to
it (the GPU simulated: these CPU builds have none). The helpers' checkpoint-and-exit with the
real frameworks is in test_preemption_training.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import labtrain_job
from tests.labtrain_job.test_labtrain_job import ROOT

pytestmark = pytest.mark.fast


def start(code: str, cwd: Path, env: dict[str, str] | None = None, pass_fds=()) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **(env or {})},
        pass_fds=pass_fds,
    )


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def reported_epochs(stderr: str) -> list[int]:
    """The epochs a script reported (on a laptop, reports are printed to stderr)."""
    found = []
    for line in stderr.splitlines():
        if line.startswith("[labtrain_job] {"):
            found.append(json.loads(line.removeprefix("[labtrain_job] "))["epoch"])
    return found


def test_sigusr1_turns_preempted_true(tmp_path):
    proc = start(
        """
        import sys, time, labtrain_job
        print(labtrain_job.preempted(), flush=True)
        while not labtrain_job.preempted():
            time.sleep(0.01)
        print(labtrain_job.preempted(), flush=True)
        """,
        tmp_path,
    )
    assert proc.stdout.readline().strip() == "False"
    proc.send_signal(signal.SIGUSR1)
    returncode, out, err = finish(proc, timeout=30)
    assert returncode == 0, err
    assert out.strip() == "True"


@pytest.mark.parametrize("under_slurm", [True, False])
def test_sigterm_turns_preempted_true_only_where_slurm_runs_the_job(tmp_path, under_slurm):
    env = {"JOB_YIELD_ON_SIGTERM": "1"} if under_slurm else {}  # what the worker SLURM runs sets
    proc = start(
        """
        import time, labtrain_job
        print(labtrain_job.preempted(), flush=True)
        while not labtrain_job.preempted():
            time.sleep(0.01)
        print(labtrain_job.preempted(), flush=True)
        """,
        tmp_path,
        env,
    )
    assert proc.stdout.readline().strip() == "False"
    proc.send_signal(signal.SIGTERM)
    returncode, out, err = finish(proc, timeout=30)
    if under_slurm:  # SLURM's SIGTERM (preemption, to every process of the job) is a yield
        assert (returncode, out.strip()) == (0, "True"), err
    else:  # a Celery worker's SIGTERM stops the program, as ever
        assert returncode == -signal.SIGTERM


def test_a_script_that_handles_sigusr1_itself_keeps_its_handler(tmp_path):
    proc = start(
        """
        import signal, time
        got = []
        signal.signal(signal.SIGUSR1, lambda *a: got.append(1))
        import labtrain_job
        print("ready", flush=True)
        while not got:
            time.sleep(0.01)
        print(labtrain_job.preempted(), signal.getsignal(signal.SIGUSR1).__name__, flush=True)
        """,
        tmp_path,
    )
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGUSR1)
    returncode, out, err = finish(proc, timeout=30)
    assert returncode == 0, err
    assert out.split() == ["False", "<lambda>"]


def test_a_module_imported_off_the_main_thread_installs_nothing():
    code = (
        "import signal, threading\n"
        "def load():\n    import labtrain_job\n"
        "t = threading.Thread(target=load); t.start(); t.join()\n"
        "print(signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(ROOT)}
    )
    assert done.stdout.strip() == "True", done.stderr


def test_the_gpu_share_is_read_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LABTRAIN_GPU_MEMORY_MB", "2048")
    assert labtrain_job.gpu_memory_mb() == 2048
    for value in ("", "lots", "0"):
        monkeypatch.setenv("LABTRAIN_GPU_MEMORY_MB", value)
        assert labtrain_job.gpu_memory_mb() is None
    monkeypatch.delenv("LABTRAIN_GPU_MEMORY_MB")
    assert labtrain_job.gpu_memory_mb() is None


FAKE_TENSORFLOW = """
    # Just enough of TensorFlow's config API to see what labtrain_job asks of it.
    import types
    calls = []
    class LogicalDeviceConfiguration:
        def __init__(self, memory_limit=None):
            self.memory_limit = memory_limit
    def list_physical_devices(kind=None):
        return ["GPU:0"] if kind == "GPU" else []
    def set_logical_device_configuration(device, configs):
        calls.append((device, [c.memory_limit for c in configs]))
    config = types.SimpleNamespace(
        list_physical_devices=list_physical_devices,
        set_logical_device_configuration=set_logical_device_configuration,
        LogicalDeviceConfiguration=LogicalDeviceConfiguration,
    )
"""


def test_tensorflow_imported_after_labtrain_job_gets_a_logical_device_of_the_share(tmp_path):
    fake = tmp_path / "fake" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(textwrap.dedent(FAKE_TENSORFLOW))
    code = "import labtrain_job, tensorflow as tf; print(tf.calls, type(tf.__loader__).__name__)"
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": f"{ROOT}:{fake.parent}", "LABTRAIN_GPU_MEMORY_MB": "1500"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[('GPU:0', [1500])] SourceFileLoader"  # and its loader is its own
    # Without a share, nothing is asked of it.
    del env["LABTRAIN_GPU_MEMORY_MB"]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path
    )
    assert done.stdout.strip() == "[] SourceFileLoader", done.stderr


def test_pytorch_is_held_to_the_share_by_its_helper_once(tmp_path):
    code = """
        import types, labtrain_job, torch
        fractions = []
        torch.cuda.is_available = lambda: True
        torch.cuda.current_device = lambda: 0
        torch.cuda.get_device_properties = lambda i: types.SimpleNamespace(total_memory=8192 * 1024 * 1024)
        torch.cuda.set_per_process_memory_fraction = lambda f, d=None: fractions.append((f, d))
        print(fractions, flush=True)  # nothing yet: PyTorch loaded after labtrain_job
        labtrain_job.torch_resume(torch.nn.Linear(2, 1))
        labtrain_job.torch_epoch_end(1, torch.nn.Linear(2, 1), loss=0.5)
        print(fractions, flush=True)
    """
    returncode, out, err = finish(start(code, tmp_path, {"LABTRAIN_GPU_MEMORY_MB": "2048"}))
    assert returncode == 0, err
    assert out.splitlines() == ["[]", "[(0.25, 0)]"]


def test_a_signal_during_a_long_wait_reaches_a_sleeping_script(tmp_path):
    """The handler only sets a flag: a script asleep or in a C call is not interrupted by it."""
    proc = start(
        "import time, labtrain_job\nprint('ready', flush=True)\ntime.sleep(1.5)\nprint(labtrain_job.preempted())\n",
        tmp_path,
    )
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    proc.send_signal(signal.SIGUSR1)
    returncode, out, err = finish(proc, timeout=30)
    assert returncode == 0 and out.strip() == "True", err
