"""A code job asked to yield its slot, in a real sandbox (bubblewrap and cgroups, as a worker
makes them): the script gets SIGUSR1, its PyTorch helper checkpoints at the epoch's end and
exits, the trainer raises Preempted, and the next attempt resumes after that epoch. A script
that does not end within the stop grace is stopped, and the job is preempted all the same.
Unsandboxed (LABTRAIN_CODE_SANDBOX=off) the same holds. Also: the GPU share in the sandbox's environment, and a GPU out-of-memory in a script's stderr
failing the job with gpu_memory_exceeded.

Not in the fast tier: each test starts sandboxes (root or a delegated cgroup, and bwrap)."""

from __future__ import annotations

import dataclasses
import time

import pytest

from service.core.config import Settings
from service.sandbox import disk
from tests.support.code_trainer import code_job, sandbox_settings
from tests.support.trainers import ListReporter, yielding_after_epochs
from workers import gpu_share
from workers.trainers import code as code_trainer
from workers.trainers.base import Allotment, JobFailed, JobResult, Preempted

TORCH_SCRIPT = """
    import time, torch, labtrain_job
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    start = labtrain_job.torch_resume(model, optimizer)
    print("starting after epoch", start, flush=True)
    labtrain_job.report(epochs=40)
    for epoch in range(start + 1, 41):
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        time.sleep(0.3 if start == 0 else 0)  # the first attempt is slow enough to be preempted
        labtrain_job.torch_epoch_end(epoch, model, optimizer, loss=loss.item())
    print("finished", flush=True)
"""

STUBBORN_SCRIPT = """
    import signal, time
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # it will not yield
    import labtrain_job
    for epoch in range(1, 1000):
        labtrain_job.report(epoch=epoch, loss=1.0 / epoch)
        time.sleep(0.2)
"""


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    return sandbox_settings(tmp_path_factory.mktemp("code-preemption"), LABTRAIN_STOP_GRACE_S="3")


@pytest.fixture(params=["sandbox", "unsandboxed"])
def each_mode(request, settings) -> Settings:
    """The sandbox, and the plain process of LABTRAIN_CODE_SANDBOX=off (one person's machine)."""
    return settings if request.param == "sandbox" else dataclasses.replace(settings, code_sandbox="off")


def test_a_preempted_script_checkpoints_exits_and_the_next_attempt_resumes(each_mode, tmp_path):
    settings = each_mode
    checkpoints = tmp_path / "checkpoints"
    first = ListReporter()
    run, inputs = code_job(settings, "torch-yields", TORCH_SCRIPT)
    began = time.monotonic()
    with pytest.raises(Preempted):
        code_trainer.train(run, inputs, first, yielding_after_epochs(first, 1, checkpoint_dir=checkpoints))
    assert time.monotonic() - began < 60
    epochs = first.epochs()
    assert epochs and epochs == list(range(1, len(epochs) + 1)) and len(epochs) < 40
    assert f"checkpoint saved after epoch {epochs[-1]}" in first.printed()  # it yielded on its own
    assert "did not end within the stop grace" not in str(first.events)
    # Where the worker can, the checkpoints are kept in the job's own filesystem (service/sandbox/disk.py).
    kept = [disk.IMAGE_NAME] if disk.unavailable() is None else [f"labtrain-epoch-{epochs[-1]:06d}.pt"]
    assert [p.name for p in checkpoints.iterdir()] == kept

    second = ListReporter()
    run, inputs = code_job(settings, "torch-yields", TORCH_SCRIPT, attempt=2)
    result = code_trainer.train(run, inputs, second, Allotment(checkpoint_dir=checkpoints))
    assert isinstance(result, JobResult) and result.result["exit_code"] == 0
    assert f"starting after epoch {epochs[-1]}" in second.printed() and "finished" in second.printed()
    assert second.epochs() == list(range(epochs[-1] + 1, 41))  # each epoch reported once in all


def test_a_script_that_does_not_yield_is_stopped_after_the_grace_and_preempted(settings, tmp_path):
    reporter = ListReporter()
    run, inputs = code_job(settings, "stubborn", STUBBORN_SCRIPT)
    began = time.monotonic()
    with pytest.raises(Preempted):
        code_trainer.train(run, inputs, reporter, yielding_after_epochs(reporter, 1, checkpoint_dir=tmp_path))
    took = time.monotonic() - began
    assert settings.stop_grace_s <= took < settings.stop_grace_s + 20
    assert any("did not end within the stop grace" in data.get("message", "") for _, data in reporter.events)


def test_the_gpu_share_is_in_the_sandboxs_environment(settings, tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_share, "gpu_total_mb", lambda: 143_771)
    reporter = ListReporter()
    script = """
        import os, labtrain_job
        for name in ("LABTRAIN_GPU_MEMORY_MB", "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT", "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"):
            print(name, os.environ.get(name))
        print("share", labtrain_job.gpu_memory_mb())
    """
    run, inputs = code_job(settings, "gpu-env", script, device="gpu")
    code_trainer.train(run, inputs, reporter, Allotment(checkpoint_dir=tmp_path, gpu_memory_mb=4096))
    text = reporter.printed()
    assert "LABTRAIN_GPU_MEMORY_MB 4096" in text and "share 4096" in text
    assert "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT 0=4096M" in text and "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE 3" in text

    cpu = ListReporter()
    run, inputs = code_job(settings, "gpu-env", script)  # a CPU job: no share
    code_trainer.train(run, inputs, cpu, Allotment(checkpoint_dir=tmp_path))
    assert "LABTRAIN_GPU_MEMORY_MB None" in cpu.printed() and "share None" in cpu.printed()


def test_a_gpu_out_of_memory_in_the_scripts_stderr_fails_the_job_with_its_code(settings, tmp_path):
    reporter = ListReporter()
    script = """
        import sys
        print("Traceback (most recent call last):", file=sys.stderr)
        print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 8.00 GiB. GPU 0 has a total "
              "capacity of 139.81 GiB of which 130 GiB is free.", file=sys.stderr)
        sys.exit(1)
    """
    run, inputs = code_job(settings, "gpu-oom", script)
    with pytest.raises(JobFailed) as failed:
        code_trainer.train(run, inputs, reporter, Allotment(checkpoint_dir=tmp_path, gpu_memory_mb=2048))
    assert failed.value.code == "gpu_memory_exceeded"
    assert "2048 MB share" in failed.value.message
