"""Code jobs: a student's own script, run in a sandbox (workers/sandbox), its reports turned
into the job's events and metrics, its stdout and stderr into the job's log, and what it
leaves in outputs/ into the job's artifacts.

The job's folder (artifacts/jobs/<id>) holds `sandbox/` while the job runs (a fresh copy of
the source in src/, outputs/ and home/, kept across attempts but for src/), the
checkpoints folder the runner keeps across attempts (mounted at /job/checkpoints), and,
once the job ends, `outputs/`: the regular files the script left there, never a link.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from service.code.spec import CodeRun
from service.core import storage
from service.core.config import Settings
from service.data.arrays import mnist_path
from service.data.tables import load_builtin
from workers import gpu_share
from workers.sandbox.box import JOB_ROOT, SANDBOX_UID, Mount, Sandbox, SandboxSpec
from workers.sandbox.cgroups import CgroupError, Hierarchy, Limits
from workers.trainers.base import Cancelled, DataSource, JobFailed, JobResult, Preempted, Reporter, TrainedModel
from workers.trainers.code.served import saved_model

MB = 1024 * 1024
DISK_CHECK_S = 1.0
EVENT_WAIT_S = 0.2
DATA_ROOT = "/data"

_hierarchy: Hierarchy | None = None


@dataclass
class CodeInputs:
    settings: Settings
    job_id: str
    attempt: int
    source_dir: Path
    dataset: Path | None  # the file (or an image folder's folder) mounted read-only at /data/<its name>
    dataset_name: str | None

    @property
    def job_dir(self) -> Path:
        return storage.job_dir(self.settings, self.job_id)


def load_data(run: CodeRun, source: DataSource) -> CodeInputs:
    settings = source.settings
    path, name = None, None
    if run.dataset is not None:
        name = run.dataset if isinstance(run.dataset, str) else run.dataset["id"]
        path = Path(source.uploaded[1]) if source.uploaded else builtin_file(settings, name)
    return CodeInputs(
        settings, source.job_id, source.attempt, storage.source_dir(settings, run.code.source), path, name
    )


def builtin_file(settings: Settings, name: str) -> Path:
    """A built-in data set as a file a script can read: MNIST's .npz, digits as .npz, a table as .csv."""
    if name == "mnist":
        return mnist_path(settings.data_dir)
    folder = settings.artifact_dir / "cache" / "datasets"
    path = folder / (f"{name}.npz" if name == "digits" else f"{name}.csv")
    if not path.exists():
        with storage.atomic_path(path) as tmp:
            if name == "digits":
                import sklearn.datasets  # scikit-learn's loader, for this one export

                digits = sklearn.datasets.load_digits()
                np.savez(tmp, x=digits.images, y=digits.target)
            else:
                table = load_builtin(name)
                pd.concat([table.X, table.y], axis=1).to_csv(tmp, index=False)
    return path


def train(run: CodeRun, inputs: CodeInputs, report: Reporter) -> JobResult | TrainedModel:
    settings = inputs.settings
    workdir = inputs.job_dir / "sandbox"
    checkpoints = report.checkpoint_dir or inputs.job_dir / "checkpoints"
    _prepare(workdir, checkpoints, inputs.source_dir)
    enforce = settings.code_sandbox == "required"
    box = Sandbox(
        _spec(run, inputs, workdir, checkpoints, report.gpu_memory_mb),
        _cgroups(settings) if enforce else None,
        report.output,
        enforce=enforce,
    )
    if not enforce:
        report.event(
            "log",
            {
                "message": "UNSANDBOXED: LABTRAIN_CODE_SANDBOX=off, so this script runs as a plain "
                "process of the worker (for one person's own machine only)"
            },
        )
    follow = _Follower(report)
    try:
        box.start()
        returncode = _supervise(box, follow, report, workdir, checkpoints, settings)
        for event in box.events(timeout=0):
            follow.handle(event)
        oom = box.oom_killed()
        _check_disk(box, workdir, checkpoints, settings, finished=True)
    finally:
        box.close()
        artifacts = _harvest(workdir / "outputs", storage.job_outputs_dir(settings, inputs.job_id))
        shutil.rmtree(workdir, ignore_errors=True)
    _fail_unless_ok(run, returncode, oom, box.stderr_tail, settings, follow, report.gpu_memory_mb)
    result: dict[str, Any] = {
        "exit_code": 0,
        "artifacts": len(artifacts),
        "artifact_bytes": sum(s for _, s in artifacts),
    }
    if follow.epoch:
        result["epochs"] = follow.epoch
    if is_notebook(run):
        stem = PurePosixPath(run.code.entrypoint).stem
        result["notebook"] = {"executed": f"{stem}.ipynb", "html": f"{stem}.html", "cells": follow.cells}
    model = saved_model(storage.job_outputs_dir(settings, inputs.job_id), follow.metrics, result)
    return model or JobResult(result=result, metrics=follow.metrics)


def is_notebook(run: CodeRun) -> bool:
    return run.code.entrypoint.endswith(".ipynb")


def program(run: CodeRun) -> list[str]:
    """What the sandbox runs: the script, or the notebook runner with the notebook's parameters."""
    if is_notebook(run):
        parameters = json.dumps(run.code.parameters)
        return [sys.executable, "-m", "labtrain_job.notebook", run.code.entrypoint, "--parameters", parameters]
    return [sys.executable, run.code.entrypoint, *run.code.args]


def _spec(
    run: CodeRun, inputs: CodeInputs, workdir: Path, checkpoints: Path, gpu_memory_mb: int | None = None
) -> SandboxSpec:
    settings = inputs.settings
    env = {
        "JOB_ID": inputs.job_id,
        "JOB_ATTEMPT": str(inputs.attempt),
        "JOB_CHECKPOINT_DIR": f"{JOB_ROOT}/checkpoints",
        "JOB_OUTPUTS_DIR": f"{JOB_ROOT}/outputs",
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "") if run.device == "gpu" else "",
    }
    if run.device == "gpu":  # its share of a GPU other jobs use too (workers/gpu_share.py)
        env.update(gpu_share.sandbox_env(gpu_memory_mb, gpu_share.gpu_total_mb() if gpu_memory_mb else None))
    mounts = [Mount(checkpoints, f"{JOB_ROOT}/checkpoints", writable=True)]
    if inputs.dataset is not None:
        inside = f"{DATA_ROOT}/{inputs.dataset.name}"
        mounts.append(Mount(inputs.dataset, inside))
        env.update(JOB_DATASET=inside, JOB_DATASET_NAME=inputs.dataset_name)
    return SandboxSpec(
        name=f"{inputs.job_id}-{inputs.attempt}",
        workdir=workdir,
        argv=program(run),
        cwd=f"{JOB_ROOT}/src",
        env=env,
        limits=Limits(
            memory_bytes=run.resources.memory_mb * MB,
            max_processes=settings.code_max_processes,
            cpus=run.resources.cpus,
        ),
        file_size_limit=settings.max_outputs_mb * MB,
        mounts=mounts,
        devices=gpu_devices() if run.device == "gpu" else [],
    )


def gpu_devices() -> list[str]:
    """The device nodes of this worker's GPU (the first of CUDA_VISIBLE_DEVICES) and the driver's."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip() or "0"
    nodes = (
        [f"/dev/nvidia{visible}"] if visible.isdigit() else sorted(str(p) for p in Path("/dev").glob("nvidia[0-9]*"))
    )
    shared = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"]
    return [node for node in [*nodes, *shared] if Path(node).exists()]


def _cgroups(settings: Settings) -> Hierarchy:
    global _hierarchy
    if _hierarchy is None:
        try:
            _hierarchy = Hierarchy(settings.cgroup_root)
        except CgroupError as exc:
            raise JobFailed("sandbox_unavailable", f"this worker cannot make a sandbox: {exc}") from None
    return _hierarchy


def _prepare(workdir: Path, checkpoints: Path, source_dir: Path) -> None:
    """The job's folder for this attempt: a fresh copy of the source; outputs and home kept."""
    shutil.rmtree(workdir / "src", ignore_errors=True)
    shutil.copytree(source_dir, workdir / "src")
    for folder in (workdir / "outputs", workdir / "home", checkpoints):
        folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:  # the sandbox runs as nobody: its folders must be nobody's
        for folder in (workdir, checkpoints):
            _chown_tree(folder, SANDBOX_UID)


def _chown_tree(folder: Path, uid: int) -> None:
    os.lchown(folder, uid, uid)
    for root, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            os.lchown(Path(root) / name, uid, uid)


def _supervise(
    box: Sandbox, follow: _Follower, report: Reporter, workdir: Path, checkpoints: Path, settings: Settings
) -> int:
    """Follow the sandbox until it ends; stop it when the job must stop or it writes too much.

    Asked to yield its slot (preemption), the script gets SIGUSR1 (labtrain_job.preempted()
    turns True: its Keras callback or PyTorch helper checkpoints at the epoch's end and exits)
    and up to the stop grace to end on its own, after which it is stopped as a cancel stops
    it; either way the job goes back to the queue (Preempted), to resume from its checkpoint."""
    grace = max(1.0, settings.stop_grace_s / 2)  # the job's watch kills the worker at the full grace
    next_check = 0.0
    yield_by: float | None = None  # when preempted: how long the script has to end on its own
    signalled = False
    try:
        while True:
            for event in box.events(timeout=EVENT_WAIT_S):
                follow.handle(event)
            if report.stop_requested():
                raise Cancelled()
            if yield_by is None and report.preempt_requested():
                yield_by = time.monotonic() + settings.stop_grace_s
                report.event("log", {"message": "asked to yield its slot: the script gets SIGUSR1 (preempted())"})
            if yield_by is not None and not signalled:  # (again while the sandbox is only starting)
                signalled = box.signal_program(signal.SIGUSR1)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + DISK_CHECK_S
                _check_disk(box, workdir, checkpoints, settings)
            if not box.running():
                returncode = box.wait()
                if yield_by is not None:
                    raise Preempted()
                return returncode
            if yield_by is not None and time.monotonic() >= yield_by:
                report.event("log", {"message": "the script did not end within the stop grace after SIGUSR1"})
                box.stop(grace)
                raise Preempted()
    except Cancelled:
        box.stop(grace)
        raise
    except Preempted:
        for event in box.events(timeout=0):  # what it reported before it ended
            follow.handle(event)
        raise


def _check_disk(box: Sandbox, workdir: Path, checkpoints: Path, settings: Settings, finished: bool = False) -> None:
    files = storage.regular_files(workdir / "outputs")
    outputs = sum(size for _, size in files)
    # A file at the size limit was cut there (Python ignores SIGXFSZ: the write fails with EFBIG).
    at_limit = finished and any(size >= settings.max_outputs_mb * MB for _, size in files)
    if outputs > settings.max_outputs_mb * MB or at_limit:
        box.kill()
        raise JobFailed(
            "outputs_limit_exceeded",
            f"the job wrote more than {settings.max_outputs_mb} MB to outputs/; "
            "keep what matters there (checkpoints go to checkpoint_dir())",
        )
    total = outputs + _size(workdir / "src") + _size(workdir / "home") + _size(checkpoints)
    if total > settings.max_job_disk_mb * MB:
        box.kill()
        raise JobFailed("disk_limit_exceeded", f"the job wrote more than {settings.max_job_disk_mb} MB in its folder")


def _size(folder: Path) -> int:
    return sum(size for _, size in storage.regular_files(folder))


def _harvest(outputs: Path, into: Path) -> list[tuple[str, int]]:
    """The regular files the script left in outputs/, moved where the API lists them (links,
    devices and pipes stay behind and go with the sandbox's folder)."""
    found = storage.regular_files(outputs)
    for relative, _size in found:
        target = into / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(outputs / relative, target)
        if os.geteuid() == 0:
            os.lchown(target, 0, 0)
    return found


def _fail_unless_ok(
    run: CodeRun,
    returncode: int,
    oom: bool,
    stderr_tail,
    settings: Settings,
    follow: _Follower,
    gpu_memory_mb: int | None = None,
) -> None:
    if oom:
        raise JobFailed(
            "memory_limit_exceeded",
            f"the job went over its memory limit of {run.resources.memory_mb} MB and was killed; "
            f"ask for more with resources.memory_mb (at most your limit) or use less",
        )
    if returncode in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ):
        raise JobFailed("outputs_limit_exceeded", f"a file the job wrote went past {settings.max_outputs_mb} MB")
    if follow.model_error:  # save_model said why it could not save the model (the script may have gone on)
        raise JobFailed("model_export_failed", f"save_model could not save the model: {follow.model_error}")
    if returncode != 0 and (
        gpu_share.is_gpu_oom_text(stderr_tail)
        or (follow.cell_failed and gpu_share.is_gpu_oom_text([follow.cell_failed["error"]]))
    ):
        raise JobFailed("gpu_memory_exceeded", gpu_share.oom_message(gpu_memory_mb))
    if returncode != 0 and follow.cell_failed:
        failed = follow.cell_failed
        where = f"cell {failed['cell']} of {failed['cells']}" if failed["cell"] else "a cell"
        raise JobFailed(
            "cell_failed",
            f"{where} failed" + (f" (`{failed['line']}`)" if failed["line"] else "") + f": {failed['error']}",
        )
    if returncode != 0:
        if returncode < 0 or returncode > 128:  # killed by a signal (bwrap passes it on as 128 + its number)
            number = -returncode if returncode < 0 else returncode - 128
            how = f"was killed by {_signal_name(number)}"
        else:
            how = f"exited with status {returncode}"
        tail = "\n".join(list(stderr_tail)[-10:])
        raise JobFailed(
            "script_failed",
            f"{run.code.entrypoint} {how}"
            + (f"; the last lines it wrote to stderr:\n{tail}" if tail else "; it wrote nothing to stderr"),
        )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class _Follower:
    """Turns the script's reports into the job's epoch events, progress and metrics."""

    def __init__(self, report: Reporter):
        self.report = report
        self.metrics: dict[str, float] = {}
        self.epoch = 0
        self.total: int | None = None
        self.cells: int | None = None  # a notebook's code cells
        self.cell_failed: dict[str, Any] | None = None
        self.model_error: str | None = None

    def handle(self, event: dict[str, Any]) -> None:
        kind = event["kind"]
        if kind == "report":
            self._report(event)
        elif kind == "cell":
            self.cells = event["cells"]
            self.report.event(
                "log",
                {"message": f"cell {event['cell']}/{event['cells']}: {event['line']}", **_without(event, "kind")},
            )
            self.report.progress(
                cell=event["cell"], cells=event["cells"], fraction=(event["cell"] - 1) / event["cells"]
            )
        elif kind == "cell_failed":
            self.cell_failed = event
        elif kind == "model_error":
            self.model_error = event["message"]
        elif kind == "model_saved":
            self.model_error = None  # a later save_model that worked

    def _report(self, event: dict[str, Any]) -> None:
        values = dict(event["metrics"])
        if "epochs" in values:  # the script says how many epochs it will run
            self.total = int(values.pop("epochs"))
        self.metrics.update(values)
        epoch = event["epoch"]
        if epoch is None:
            self.report.progress(metrics=dict(self.metrics))
            return
        self.epoch = max(self.epoch, epoch)
        data = {"epoch": epoch, **({"epochs": self.total} if self.total else {}), **values}
        self.report.event("epoch", data)
        progress: dict[str, Any] = {"epoch": epoch, "metrics": dict(self.metrics)}
        if self.total:
            progress["epochs"] = self.total
            if self.cells is None:  # a notebook's progress is its cells'
                progress["fraction"] = min(epoch / self.total, 1.0)
        self.report.progress(**progress)


def _without(event: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != key}
