"""Code jobs: a student's own script, run in a sandbox (service/sandbox), its reports turned
into the job's events and metrics, its stdout and stderr into the job's log, and what it
leaves in outputs/ into the job's artifacts.

The job's folder (artifacts/jobs/<id>) holds `sandbox/` while the job runs (a fresh copy of
the source in src/, outputs/ and home/, kept across attempts but for src/; the program's own
./outputs is a link to outputs/), the
checkpoints folder the runner keeps across attempts (mounted at /job/checkpoints), and,
once the job ends, `outputs/`: the regular files the script left there, never a link.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from service.code.spec import CodeRun
from service.core import storage
from service.core.config import Settings
from service.data.arrays import builtin_path
from service.data.known import KNOWN
from service.data.tables import load_builtin
from service.sandbox import cgroups, disk
from service.sandbox.box import (
    JOB_ROOT,
    LABTRAIN_JOB_DIR,
    SANDBOX_UID,
    Mount,
    Sandbox,
    SandboxSpec,
    interpreter,
    labtrain_job_folder,
)
from service.sandbox.cgroups import CgroupError, Hierarchy, Limits
from workers import batch_signal, gpu_share
from workers.tracking_socket import SOCKET_FOLDER, SOCKET_NAME, TrackingSocket
from workers.trainers.base import (
    Allotment,
    Cancelled,
    DataSource,
    JobFailed,
    JobResult,
    Preempted,
    Reporter,
    TrainedModel,
)
from workers.trainers.code.notebook_page import make_page
from workers.trainers.code.served import saved_model
from workers.trainers.code.tensorboard import TensorBoardScalars
from workers.trainers.datasets import subset_label

MB = 1024 * 1024
DISK_CHECK_S = 1.0
EVENT_WAIT_S = 0.2
DATA_ROOT = "/data"
# Under SLURM the sandbox's launcher ignores SIGTERM (service/sandbox/box.py); the program gets
# it back, as its default, from this, which then becomes the program.
SIGTERM_RESTORED = (
    "import os, signal, sys; signal.signal(signal.SIGTERM, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
)
# SLURM's SIGTERM reaches the program and the runner at once: how long the runner's is waited for.
BATCH_SIGNAL_WAIT_S = 2.0
# At SLURM's time limit the program has this long after its SIGTERM before its sandbox is killed:
# well within KillWait (30 s by default), after which SLURM kills every process of the job, the
# runner too, which must first record the outcome and put the sandbox away (its disk, its cgroup).
TIME_LIMIT_GRACE_S = 2.0
TENSORBOARD_DIR = f"{JOB_ROOT}/outputs/tensorboard"  # LABTRAIN_TENSORBOARD_DIR: a suggestion; all of outputs/ is read


@dataclass
class CodeInputs:
    settings: Settings
    job_id: str
    attempt: int
    source_dir: Path
    dataset: Path | None  # the file (or an image folder's folder) mounted read-only at /data/<its name>
    dataset_name: str | None
    dataset_label: str | None = None  # `mnist (subset: ...)` while the packaged subset serves it

    @property
    def job_dir(self) -> Path:
        return storage.job_dir(self.settings, self.job_id)


def load_data(run: CodeRun, source: DataSource) -> CodeInputs:
    settings = source.settings
    path, name = None, None
    if run.dataset is not None:
        name = run.dataset if isinstance(run.dataset, str) else run.dataset["id"]
        path = Path(source.uploaded[1]) if source.uploaded else builtin_file(settings, name)
    label = subset_label(name, settings.data_dir) if name is not None and not source.uploaded else None
    return CodeInputs(
        settings, source.job_id, source.attempt, storage.source_dir(settings, run.code.source), path, name, label
    )


def builtin_file(settings: Settings, name: str) -> Path:
    """A built-in data set as a file a script can read: a known image set's .npz (MNIST, ...),
    digits as .npz, a table as .csv."""
    if name in KNOWN:
        return builtin_path(name, settings.data_dir)
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


def train(run: CodeRun, inputs: CodeInputs, report: Reporter, allotted: Allotment) -> JobResult | TrainedModel:
    settings = inputs.settings
    checkpoints = allotted.checkpoint_dir or inputs.job_dir / "checkpoints"
    space = _job_disk(settings, inputs, checkpoints)
    workdir = space.root
    enforce = settings.code_sandbox == "required"
    follow = _Follower(report)
    scalars = TensorBoardScalars(
        workdir / "outputs", report, settings.tensorboard_max_points, settings.max_outputs_mb * MB
    )
    box: Sandbox | None = None
    tracking: TrackingSocket | None = None
    try:
        _prepare(space, inputs.source_dir, starting_folder(run))
        if allotted.tracking_app is not None:  # the job's MLflow endpoint, for this attempt alone
            owner = SANDBOX_UID if enforce and os.geteuid() == 0 else None
            tracking = TrackingSocket(allotted.tracking_app(follow.on_metrics), owner_uid=owner)
        box = Sandbox(
            _spec(
                run,
                inputs,
                workdir,
                space.checkpoints,
                allotted.gpu_memory_mb,
                tracking.folder if tracking else None,
                allotted.tracking_run_id,
            ),
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
        box.start()
        returncode = _supervise(box, follow, report, allotted, space, settings, scalars)
        for event in box.events(timeout=0):
            follow.handle(event)
        follow.scalars(scalars.finish())  # what its event files hold that the last read did not see
        oom = box.oom_killed()
        _check_disk(box, space, settings, finished=True)
    finally:
        if box is not None:
            box.close()
        if tracking is not None:  # after the sandbox: nothing of the job is left to ask
            tracking.close()
        try:
            artifacts = _harvest(workdir / "outputs", storage.job_outputs_dir(settings, inputs.job_id))
            space.clear()
        finally:
            space.close()
    stem = PurePosixPath(run.code.entrypoint).stem
    # Its page is rendered here, once its processes are gone: never taken from what it wrote.
    page = make_page(settings, inputs.job_id, inputs.attempt, stem, box.hierarchy) if is_notebook(run) else {}
    _fail_unless_ok(run, returncode, oom, box.stderr_tail, settings, follow, allotted.gpu_memory_mb)
    result: dict[str, Any] = {
        "exit_code": 0,
        "artifacts": len(artifacts),
        "artifact_bytes": sum(s for _, s in artifacts),
    }
    if follow.epoch:
        result["epochs"] = follow.epoch
    if inputs.dataset_label:
        result["dataset"] = inputs.dataset_label
    if is_notebook(run):
        result["notebook"] = {"executed": f"{stem}.ipynb", "cells": follow.cells, **page}
    model = saved_model(storage.job_outputs_dir(settings, inputs.job_id), follow.metrics, result)
    return model or JobResult(result=result, metrics=follow.metrics)


def is_notebook(run: CodeRun) -> bool:
    return run.code.entrypoint.endswith(".ipynb")


def program(run: CodeRun) -> list[str]:
    """What the sandbox runs: the script, or the notebook runner with the notebook's parameters."""
    if is_notebook(run):
        parameters = json.dumps(run.code.parameters)
        return [interpreter(), "-m", "labtrain_job.notebook", run.code.entrypoint, "--parameters", parameters]
    return [interpreter(), run.code.entrypoint, *run.code.args]


def _spec(
    run: CodeRun,
    inputs: CodeInputs,
    workdir: Path,
    checkpoints: Path,
    gpu_memory_mb: int | None = None,
    tracking_folder: Path | None = None,
    tracking_run_id: str | None = None,
) -> SandboxSpec:
    settings = inputs.settings
    env = {
        "JOB_ID": inputs.job_id,
        "JOB_ATTEMPT": str(inputs.attempt),
        "JOB_CHECKPOINT_DIR": f"{JOB_ROOT}/checkpoints",
        "JOB_OUTPUTS_DIR": f"{JOB_ROOT}/outputs",
        "LABTRAIN_TENSORBOARD_DIR": TENSORBOARD_DIR,
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "") if run.device == "gpu" else "",
    }
    if run.device == "gpu":  # its share of a GPU other jobs use too (workers/gpu_share.py)
        env.update(gpu_share.sandbox_env(gpu_memory_mb, gpu_share.gpu_total_mb() if gpu_memory_mb else None))
    # On the job's own filesystem the checkpoints are in it already (disk.ImageDisk).
    on_its_disk = checkpoints.parent == workdir
    mounts = [] if on_its_disk else [Mount(checkpoints, f"{JOB_ROOT}/checkpoints", writable=True)]
    if inputs.dataset is not None:
        inside = f"{DATA_ROOT}/{inputs.dataset.name}"
        mounts.append(Mount(inputs.dataset, inside))
        env.update(JOB_DATASET=inside, JOB_DATASET_NAME=inputs.dataset_name)
    argv, forwarders = program(run), 0
    under_slurm = batch_signal.under_batch_system()
    if under_slurm:  # SLURM's SIGTERM is a yield: labtrain_job's preempted() turns True on it
        env["JOB_YIELD_ON_SIGTERM"] = "1"
        argv = [interpreter(), "-I", "-S", "-c", SIGTERM_RESTORED, *argv]
    if tracking_folder is not None:  # MLFLOW_TRACKING_URI: the forwarder sets it, then becomes the program
        mounts.append(Mount(tracking_folder, SOCKET_FOLDER))
        env["MLFLOW_RUN_ID"] = tracking_run_id or ""
        argv, forwarders = forwarded(argv, settings.code_sandbox == "required"), 1
    return SandboxSpec(
        name=f"{inputs.job_id}-{inputs.attempt}",
        workdir=workdir,
        argv=argv,
        cwd=f"{JOB_ROOT}/src",
        env=env,
        limits=Limits(
            memory_bytes=run.resources.memory_mb * MB,
            max_processes=settings.code_max_processes + forwarders,  # the forwarder is not the job's to count
            cpus=run.resources.cpus,
        ),
        file_size_limit=settings.max_outputs_mb * MB,
        max_open_files=settings.code_max_open_files,
        mounts=mounts,
        devices=gpu_devices() if run.device == "gpu" else [],
        ignore_sigterm=under_slurm,
    )


def forwarded(argv: list[str], sandboxed: bool) -> list[str]:
    """The program behind labtrain_job's forwarder (run by its path, not imported: importing
    labtrain_job is the program's to do), which pipes 127.0.0.1:<port> to the job's socket."""
    folder = f"{LABTRAIN_JOB_DIR}/labtrain_job" if sandboxed else str(labtrain_job_folder())
    socket_path = f"{SOCKET_FOLDER}/{SOCKET_NAME}"
    return [interpreter(), "-I", "-S", f"{folder}/forwarder.py", "--socket", socket_path, "--", *argv]


def gpu_devices() -> list[str]:
    """The device nodes of this worker's GPU (the first of CUDA_VISIBLE_DEVICES) and the driver's."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip() or "0"
    nodes = (
        [f"/dev/nvidia{visible}"] if visible.isdigit() else sorted(str(p) for p in Path("/dev").glob("nvidia[0-9]*"))
    )
    shared = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"]
    return [node for node in [*nodes, *shared] if Path(node).exists()]


def _cgroups(settings: Settings) -> Hierarchy:
    try:
        return cgroups.shared(settings.cgroup_root)
    except CgroupError as exc:
        raise JobFailed("sandbox_unavailable", f"this worker cannot make a sandbox: {exc}") from None


def _job_disk(settings: Settings, inputs: CodeInputs, checkpoints: Path) -> disk.ImageDisk | disk.FolderDisk:
    """Where the job writes: a filesystem of its own where this worker can make one (kept
    across attempts in the checkpoints folder, with the checkpoints in it), else a folder."""
    size, files = settings.max_job_disk_mb * MB, settings.code_max_files
    if disk.unavailable() is not None:
        return disk.FolderDisk(inputs.job_dir / "sandbox", checkpoints, size, files)
    try:
        return disk.ImageDisk.mount(f"{inputs.job_id}-{inputs.attempt}", checkpoints / disk.IMAGE_NAME, size, files)
    except disk.DiskError as exc:
        raise JobFailed("sandbox_unavailable", f"this worker could not make the job's disk: {exc}") from None


def _prepare(space: disk.ImageDisk | disk.FolderDisk, source_dir: Path, starts_in: PurePosixPath) -> None:
    """The job's folder for this attempt: a fresh copy of the source; outputs and home kept."""
    workdir, checkpoints = space.root, space.checkpoints
    shutil.rmtree(workdir / "src", ignore_errors=True)
    shutil.copytree(source_dir, workdir / "src")
    _link_outputs(workdir / "src", starts_in)
    for folder in (workdir / "outputs", workdir / "home", checkpoints):
        folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:  # the sandbox runs as nobody: its folders must be nobody's
        for folder in space.job_folders:
            _chown_tree(folder, SANDBOX_UID)


def starting_folder(run: CodeRun) -> PurePosixPath:
    """Where the program starts, within the source: a script in the source's top folder (as
    `python week3/train.py` would), a notebook in its own folder (as Jupyter would)."""
    return PurePosixPath(run.code.entrypoint).parent if is_notebook(run) else PurePosixPath(".")


def _link_outputs(src: Path, starts_in: PurePosixPath) -> None:
    """outputs/ where the program starts is the job's outputs/, the folder outputs_dir() names
    (tutorials and notebooks write to ./outputs, as labtrain_job does on a laptop): a relative
    link, the same inside the sandbox and out. What the upload held there is not the job's output.
    Nothing of the worker's follows the link: the job's outputs/ is walked from its own path."""
    link = src / starts_in / "outputs"
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    else:
        link.unlink(missing_ok=True)
    link.symlink_to(PurePosixPath(*[".."] * (len(starts_in.parts) + 1), "outputs"))


def _chown_tree(folder: Path, uid: int) -> None:
    """Never through a link, even one swapped in meanwhile (storage.entries)."""
    top = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fchown(top, uid, uid)
    finally:
        os.close(top)
    for _relative, _info, dir_fd, name in storage.entries(folder):
        with contextlib.suppress(FileNotFoundError):
            os.chown(name, uid, uid, dir_fd=dir_fd, follow_symlinks=False)


def _supervise(
    box: Sandbox,
    follow: _Follower,
    report: Reporter,
    allotted: Allotment,
    space: disk.ImageDisk | disk.FolderDisk,
    settings: Settings,
    scalars: TensorBoardScalars | None = None,
) -> int:
    """Follow the sandbox until it ends; stop it when the job must stop or it writes too much.

    Asked to yield its slot (preemption), the script gets SIGUSR1 (labtrain_job.preempted()
    turns True: its Keras callback or PyTorch helper checkpoints at the epoch's end and exits)
    and up to the stop grace to end on its own, after which it is stopped as a cancel stops
    it; either way the job goes back to the queue (Preempted), to resume from its checkpoint.
    At SLURM's time limit the script is stopped at once, whether or not it heeds SIGTERM, and the
    job fails: before SLURM's SIGKILL, so that its outcome, outputs and sandbox are seen to."""
    grace = max(1.0, settings.stop_grace_s / 2)  # the job's watch kills the worker at the full grace
    next_check = 0.0
    yield_by: float | None = None  # when preempted: how long the script has to end on its own
    signalled = False
    try:
        while True:
            for event in box.events(timeout=EVENT_WAIT_S):
                follow.handle(event)
            if allotted.stop_requested():
                raise Cancelled()
            if yield_by is None and allotted.preempt_requested():
                yield_by = time.monotonic() + settings.stop_grace_s
                report.event("log", {"message": "asked to yield its slot: the script gets SIGUSR1 (preempted())"})
            if yield_by is not None and not signalled:  # (again while the sandbox is only starting)
                signalled = box.signal_program(signal.SIGUSR1)
            if batch_signal.asked() == batch_signal.ENDING:  # a script that ignores SIGTERM ends too
                report.event(
                    "log", {"message": "SLURM's time limit (--time) is ending: the script gets SIGTERM, then is killed"}
                )
                box.stop(TIME_LIMIT_GRACE_S)
                raise _slurm_time_limit()
            walk = time.monotonic() >= next_check  # outputs/ (and a FolderDisk) are walked, at most this often
            if walk:
                next_check = time.monotonic() + DISK_CHECK_S
            if walk or space.held_by_kernel:
                _check_disk(box, space, settings, outputs=walk)
            if scalars is not None and scalars.due():  # its TensorBoard event files, every couple of seconds
                follow.scalars(scalars.read())
            if not box.running():
                returncode = box.wait()
                slurm = _batch_signal_after(returncode)
                if yield_by is not None or slurm == batch_signal.YIELD:
                    raise Preempted()
                if slurm == batch_signal.ENDING:  # whatever it did on the signal, it did not finish
                    raise _slurm_time_limit()
                return returncode
            if yield_by is not None and time.monotonic() >= yield_by:
                report.event("log", {"message": "the script did not end within the stop grace after SIGUSR1"})
                box.stop(grace)
                raise Preempted()
    except Cancelled:
        box.stop(grace)
        raise
    except (Preempted, JobFailed) as stopped:
        for event in box.events(timeout=0):  # what it reported before it ended
            follow.handle(event)
        if scalars is not None and isinstance(stopped, Preempted):  # its files leave with this attempt
            follow.scalars(scalars.finish())
        raise


def _slurm_time_limit() -> JobFailed:
    return JobFailed(
        "time_limit_exceeded",  # as the job's own time limit says it
        f"SLURM's time limit (--time) ended the job (SLURM job {os.environ.get('SLURM_JOB_ID')})",
    )


def _batch_signal_after(returncode: int) -> str | None:
    """What SLURM's signal meant, where the program ended under SLURM: the signal reaches the
    program and this process at once, and may end a program that does not handle it first."""
    if not batch_signal.under_batch_system():
        return None
    if returncode in (-signal.SIGTERM, 128 + signal.SIGTERM):
        deadline = time.monotonic() + BATCH_SIGNAL_WAIT_S
        while batch_signal.asked() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    return batch_signal.asked()


def _check_disk(
    box: Sandbox,
    space: disk.ImageDisk | disk.FolderDisk,
    settings: Settings,
    finished: bool = False,
    outputs: bool = True,
) -> None:
    """Stop the job at its limits: its disk's (held by the kernel, or walked) and outputs/'s
    (walked, bounded by the files limit on the job's own filesystem)."""
    full = space.full()
    if full == "files":
        box.kill()
        raise JobFailed(
            "files_limit_exceeded",
            f"the job made more than {settings.code_max_files} files and folders in its folder "
            "(LABTRAIN_CODE_MAX_FILES); keep fewer, larger files (e.g. one archive)",
        )
    if full == "bytes":
        box.kill()
        raise JobFailed(
            "disk_limit_exceeded",
            f"the job wrote more than its folder holds ({settings.max_job_disk_mb} MB, LABTRAIN_MAX_JOB_DISK_MB, "
            "files deleted but still open included); write less, or remove what it no longer needs",
        )
    if not (outputs or finished):
        return
    files = storage.regular_files(space.root / "outputs")
    # A file at the size limit was cut there (Python ignores SIGXFSZ: the write fails with EFBIG).
    at_limit = finished and any(size >= settings.max_outputs_mb * MB for _, size in files)
    if sum(size for _, size in files) > settings.max_outputs_mb * MB or at_limit:
        box.kill()
        raise JobFailed(
            "outputs_limit_exceeded",
            f"the job wrote more than {settings.max_outputs_mb} MB to outputs/; "
            "keep what matters there (checkpoints go to checkpoint_dir())",
        )


def _harvest(outputs: Path, into: Path) -> list[tuple[str, int]]:
    """The regular files the script left in outputs/, moved where the API lists them (links,
    devices and pipes stay behind and go with the sandbox's folder). Each is reached through
    its folder's descriptor, never by a path the job could have swapped for a link."""
    found = []
    for relative, info, dir_fd, name in storage.entries(outputs):
        if not stat.S_ISREG(info.st_mode):
            continue
        target = into / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        size = _move(dir_fd, name, target)
        if size is not None:
            found.append((relative, size))
    return sorted(found)


def _move(dir_fd: int, name: str, target: Path) -> int | None:
    """A regular file, renamed (same filesystem) or copied from its descriptor (the job's own
    filesystem) to `target`; its size, or None when it is no regular file (any longer)."""
    try:
        source = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:  # gone, or a link now
        return None
    with os.fdopen(source, "rb") as handle:
        info = os.fstat(source)
        if not stat.S_ISREG(info.st_mode):
            return None
        try:
            os.replace(name, target, src_dir_fd=dir_fd)
            moved = os.lstat(target)
            if not stat.S_ISREG(moved.st_mode) or not os.path.samestat(moved, info):  # swapped in between
                target.unlink()
                return None
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            with storage.atomic_path(target) as tmp, open(tmp, "wb") as copy:
                shutil.copyfileobj(handle, copy, 1024 * 1024)
    if os.geteuid() == 0:
        os.lchown(target, 0, 0)
    return os.lstat(target).st_size


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
        self._folding = threading.Lock()  # the tracking endpoint's threads fold values in too

    def on_metrics(self, values: dict[str, float]) -> None:
        """The latest values the job logged to its MLflow run (from the endpoint's threads)."""
        with self._folding:
            self.metrics.update(values)

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
        elif kind == "dropped":  # the sandbox's word: the job sent more than it may
            self.report.event("log", {"message": event["message"]})

    def scalars(self, values: dict[str, float]) -> None:
        """The latest values of the scalars its TensorBoard event files gave, into the job's metrics."""
        if values:
            with self._folding:
                self.metrics.update(values)
                latest = dict(self.metrics)
            self.report.progress(metrics=latest)

    def _report(self, event: dict[str, Any]) -> None:
        values = dict(event["metrics"])
        if "epochs" in values:  # the script says how many epochs it will run
            self.total = int(values.pop("epochs"))
        with self._folding:
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
