"""One model's process: started in a sandbox (bubblewrap, a cgroup and the seccomp filter, as a
code job's), where it holds the model file alone, read-only, and the service's files, network
and credentials are out of its reach. Where no sandbox can be made (a container without the
privileges, a laptop with LABTRAIN_CODE_SANDBOX=off) it is a plain child with a scrubbed
environment under rlimits, unless LABTRAIN_PREDICT_SANDBOX=required (then predict is a 503).
Each request has a deadline; a process past its memory or its time is killed, and the request
is answered with prediction_limit_exceeded."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import resource
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import service
from service.core.config import Settings
from service.core.errors import ServiceError
from service.sandbox import cgroups, probe
from service.sandbox.box import SANDBOX_UID, Mount, SandboxSpec, base_env, bwrap_command, interpreter, start_process
from service.sandbox.cgroups import CgroupError, Hierarchy, JobCgroup, Limits
from service.serving import frames

MB = 1024 * 1024
MODEL_DIR = "/model"
SERVICE_DIR = "/opt/labtrain/service"
MAX_PROCESSES = 256  # threads count here too: TensorFlow and onnxruntime make pools of them
MAX_FILE_MB = 64  # what the process may write (it needs none)
STDERR_LINES = 20

log = logging.getLogger(__name__)


class PredictionLimitExceeded(ServiceError):
    status = 422
    code = "prediction_limit_exceeded"


class ModelUnavailable(ServiceError):
    """The server cannot run a model's process (no sandbox can be made here)."""

    status = 503
    code = "model_isolation_unavailable"


@dataclass(frozen=True)
class ProcessLimits:
    memory_mb: int
    cpus: float
    time_limit_s: float
    load_time_limit_s: float
    sandbox: str = "required"  # auto | required | off (LABTRAIN_PREDICT_SANDBOX)
    cgroup_root: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ProcessLimits:
        return cls(
            memory_mb=settings.predict_memory_mb,
            cpus=settings.predict_cpus,
            time_limit_s=settings.predict_time_limit_s,
            load_time_limit_s=settings.predict_load_time_limit_s,
            sandbox=settings.predict_sandbox if settings.code_sandbox == "required" else "off",
            cgroup_root=settings.cgroup_root,
        )

    def sandboxed(self) -> bool:
        return self.sandbox != "off" and _sandboxed(self.sandbox, self.cgroup_root)


@functools.cache  # asked once per process (a test sandbox), at its first model
def _sandboxed(wanted: str, cgroup_root: Path | None) -> bool:
    problem = probe.sandbox_problem(cgroup_root)
    if problem is None:
        return True
    if wanted == "required":
        raise ModelUnavailable(
            f"this server cannot run a model in a sandbox ({problem}), and LABTRAIN_PREDICT_SANDBOX=required"
        )
    log.warning(
        "models answer from plain processes with rlimits, not sandboxes: %s (LABTRAIN_PREDICT_SANDBOX=required "
        "refuses that)",
        problem,
    )
    return False


def _hierarchy(root: Path | None) -> Hierarchy:
    try:
        return cgroups.shared(root)
    except CgroupError as exc:
        raise ModelUnavailable(f"this server cannot isolate a model's process: {exc}") from None


class ModelProcess:
    """A model loaded in a process of its own, answering one request at a time."""

    def __init__(self, predictor: str, model: dict[str, Any], model_file: Path, limits: ProcessLimits):
        self.predictor, self.limits, self.model_file = predictor, limits, Path(model_file)
        self.model = {**model, "artifact_path": f"{MODEL_DIR}/{self.model_file.name}"}
        self.lock = threading.Lock()
        self.last_used = time.monotonic()
        self.proc: subprocess.Popen | None = None
        self.group: JobCgroup | None = None
        self._workdir: Path | None = None
        self._stderr: deque[str] = deque(maxlen=STDERR_LINES)

    # -- starting ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the process and load the model; a model that cannot load is the error it gave."""
        self._workdir = Path(tempfile.mkdtemp(prefix="labtrain-model-"))
        try:
            if self.limits.sandboxed():
                self.proc = self._start_sandboxed()
            else:
                self.proc = self._start_plain()
            threading.Thread(target=self._read_stderr, args=(self.proc.stderr,), daemon=True).start()
            self._ask({"predictor": self.predictor, "model": self.model}, [], self.limits.load_time_limit_s, "load")
        except BaseException:
            self.close()
            raise

    def _start_sandboxed(self) -> subprocess.Popen:
        as_root = os.geteuid() == 0
        if as_root:
            os.chown(self._workdir, SANDBOX_UID, SANDBOX_UID)
        spec = self._spec()
        self.group = _hierarchy(self.limits.cgroup_root).create(spec.name, spec.limits)
        inner = bwrap_command(spec, 2, as_root=as_root)  # no events channel: fd 2 is stderr
        pipes = subprocess.PIPE
        return start_process(spec, self.group, inner, stdin=pipes, stdout=pipes, stderr=pipes)

    def _spec(self) -> SandboxSpec:
        return SandboxSpec(
            name=f"model-{uuid.uuid4().hex[:12]}",
            workdir=self._workdir,
            argv=[interpreter(), "-m", "service.serving.child"],
            cwd="/job",
            env={"PYTHONPATH": str(Path(SERVICE_DIR).parent), "PYTHONDONTWRITEBYTECODE": "1"},
            limits=Limits(self.limits.memory_mb * MB, MAX_PROCESSES, self.limits.cpus),
            file_size_limit=MAX_FILE_MB * MB,
            mounts=[
                Mount(Path(service.__file__).resolve().parent, SERVICE_DIR),
                Mount(self.model_file.resolve(), self.model["artifact_path"]),
            ],
        )

    def _start_plain(self) -> subprocess.Popen:
        """Unsandboxed (no sandbox here, or the server's choice): still a process of its own with
        a scrubbed environment, a data-size limit, and the model file as its path."""
        self.model["artifact_path"] = str(self.model_file.resolve())
        spec = self._spec()
        env = {**base_env(spec), "HOME": str(self._workdir), "PYTHONPATH": str(Path(service.__file__).parent.parent)}
        memory = self.limits.memory_mb * MB

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
            resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_MB * MB, MAX_FILE_MB * MB))

        return subprocess.Popen(
            spec.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=self._workdir,
            preexec_fn=limit,  # (no threads of ours run Python in the child before exec)
            start_new_session=True,
        )

    # -- asking -----------------------------------------------------------------------------
    def predict(self, instances: Any, images: list[tuple[str, bytes]] | None) -> dict[str, Any]:
        request: dict[str, Any] = {"instances": instances}
        parts: list[bytes] = []
        if images is not None:
            request["images"] = [name[:200] for name, _ in images]
            parts = [data for _, data in images]
        return self._ask(request, parts, self.limits.time_limit_s, "answer")

    def _ask(self, request: dict[str, Any], parts: list[bytes], limit_s: float, doing: str) -> dict[str, Any]:
        self.last_used = time.monotonic()
        try:
            self.proc.stdin.write(frames.encode(request, parts))
            self.proc.stdin.flush()
            answer, _ = frames.read_by(self.proc.stdout.fileno(), time.monotonic() + limit_s)
        except frames.TimedOut:
            self.close()
            raise PredictionLimitExceeded(
                f"the model took longer than {limit_s:g} s to {doing} and was stopped; "
                "send fewer instances, or train a smaller model",
                field="id",
                details={"limit": "time", "seconds": limit_s},
            ) from None
        except (frames.ChannelClosed, BrokenPipeError, ValueError) as exc:
            oom = self.group is not None and self.group.oom_killed()
            self.close()
            if oom:
                raise self._over_memory(doing) from None
            raise ServiceError(
                f"the model's process ended before it could {doing}"
                + (f": {self._stderr[-1]}" if self._stderr else "")
                + (f" ({exc})" if isinstance(exc, ValueError) else ""),
                code="prediction_failed",
                status=422,
                field="id",
            ) from None
        return self._answer(answer, doing)

    def _answer(self, answer: Any, doing: str) -> dict[str, Any]:
        """What the process said, checked: it is a model's process, so it may say anything."""
        if not isinstance(answer, dict):
            raise ServiceError("the model's process gave no answer", code="prediction_failed", status=422, field="id")
        if answer.get("ok") is True:
            output = answer.get("output", {})
            return output if isinstance(output, dict) else {"predictions": output}
        error = answer.get("error") if isinstance(answer.get("error"), dict) else {}
        if error.get("code") == "prediction_limit_exceeded":
            self.close()
            raise self._over_memory(doing)
        status = error.get("status") if error.get("status") in (404, 409, 413, 422) else 422
        details = error.get("details") if isinstance(error.get("details"), dict) else {}
        raise ServiceError(
            str(error.get("message") or "the model could not answer")[:4000],
            code=str(error.get("code") or "prediction_failed")[:64],
            status=status,
            details={str(k)[:64]: v for k, v in list(details.items())[:20] if isinstance(v, (str, int, float, list))},
        )

    def _over_memory(self, doing: str) -> PredictionLimitExceeded:
        return PredictionLimitExceeded(
            f"the model needed more than {self.limits.memory_mb} MB to {doing} and was stopped; "
            "send fewer instances, or train a smaller model",
            field="id",
            details={"limit": "memory", "memory_mb": self.limits.memory_mb},
        )

    # -- ending -----------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        """Nothing of it left: its processes killed, its cgroup and folder removed."""
        if self.group is not None:
            self.group.kill_all()
        if self.proc is not None:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            for stream in (self.proc.stdin, self.proc.stdout):
                with contextlib.suppress(OSError):
                    stream.close()
        if self.group is not None:
            self.group.remove()
            self.group = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def _read_stderr(self, stream) -> None:
        with contextlib.suppress(OSError, ValueError):
            for raw in iter(lambda: stream.readline(4096), b""):
                self._stderr.append(raw.decode(errors="replace").rstrip()[:500])
