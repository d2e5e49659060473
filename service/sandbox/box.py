"""One sandbox: a student's program run by bubblewrap in its own namespaces, inside a cgroup.

What the program sees: the system and the Python environment read-only, its job folder at
/job (writable), its data set read-only under /data, a private /tmp, and an environment
this module writes from scratch (nothing of the worker's). It has no network (its own
empty network namespace), its own PID namespace (the worker's processes are not there),
and it dies with the worker (`--die-with-parent`; the namespace's init takes every
process with it). When the worker runs as root, the program runs as an unprivileged uid
(nobody) with no capabilities; otherwise as the worker's own user inside a user namespace.
Either way a seccomp filter (service/sandbox/seccomp.py) refuses the system calls that reach
past these walls: keyrings, new namespaces, mounts, tracing, the kernel's own state.

How it starts: `sh` writes its own pid into the job's cgroup(s), then becomes a Python
helper that joins a new, empty session keyring (nothing of the worker's), which becomes
`prlimit` (the size of any one file, the number of open files), which becomes a `sh` that
opens the seccomp filter for `bwrap`: every process of the sandbox is born inside the
limits. The program reports through a pipe (JOB_EVENTS_FD) that only this side reads; its
stdout and stderr are read line by line.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.sandbox import seccomp
from service.sandbox.cgroups import Hierarchy, JobCgroup, Limits
from service.sandbox.environment import python_environment

SANDBOX_UID = 65534  # nobody: used when the worker is root
JOB_ROOT = "/job"
LABTRAIN_JOB_DIR = "/opt/labtrain"
SESSION_KEYRING = Path(__file__).with_name("session_keyring.py")
# Parts of /etc a program may need (shared libraries, time zone, certificates, fonts); the
# rest (passwords, the service's configuration) is not there.
ETC_ENTRIES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "ssl",
    "ca-certificates",
    "fonts",
    "alternatives",
    "mime.types",
)
MAX_EVENT_LINE = 16384
MAX_OUTPUT_LINE = 4096
# What one attempt's program may send, every channel together (stdout, stderr, the events
# pipe): bytes into the job's log, and events that become rows of the job's events (an epoch,
# a notebook's cell). Past either the rest is dropped and the job is told once. Constants, not
# settings: they guard the database and the worker's disk, which no lab needs to tune.
MAX_OUTPUT_BYTES = 20 * 1024 * 1024
MAX_EVENT_ROWS = 20_000
MAX_WAITING_EVENTS = 10_000  # read but not yet handled: the worker's memory
STDERR_TAIL = 20


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    writable: bool = False


@dataclass
class SandboxSpec:
    name: str  # the cgroup's name: unique per job attempt
    workdir: Path  # the job's folder, mounted writable at /job
    argv: list[str]  # the program and its arguments, as the sandbox sees them
    cwd: str  # inside
    env: dict[str, str]  # besides the base environment
    limits: Limits
    file_size_limit: int  # bytes any one file may reach
    max_open_files: int = 1024  # per process (RLIMIT_NOFILE)
    mounts: list[Mount] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)  # host device nodes to expose (a GPU's)
    # Under SLURM, which signals every process of a job: bwrap and the sandbox's init ignore
    # SIGTERM (bwrap's death would take the program with it); the program gets it back (the
    # trainer's wrapper) and decides.
    ignore_sigterm: bool = False


def python_mounts() -> list[Mount]:
    """The Python this worker runs (its installation and its virtual environment), read-only,
    at the paths PATH and `interpreter()` name them by."""
    return [Mount(folder, str(folder)) for folder in python_environment().folders]


def interpreter() -> str:
    """The worker's Python as a program in the sandbox reaches it."""
    return str(python_environment().interpreter)


def labtrain_job_folder() -> Path:
    """Where the job-side module is, found without importing it here (its import installs a
    SIGUSR1 handler, which is the job's, not the worker's)."""
    return Path(importlib.util.find_spec("labtrain_job").origin).resolve().parent


def labtrain_job_mount() -> Mount:
    return Mount(labtrain_job_folder(), f"{LABTRAIN_JOB_DIR}/labtrain_job")


def bwrap_command(spec: SandboxSpec, events_fd: int, as_root: bool) -> list[str]:
    """bwrap's command line, behind a `sh` that opens the seccomp filter for it on a descriptor
    of its own (any number but the reports')."""
    seccomp_fd = 4 if events_fd == 3 else 3
    args = [
        "sh",
        "-c",
        f'exec {seccomp_fd}<"$0" && exec "$@"',
        seccomp.program_path(),
        "bwrap",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "sandbox",
        "--seccomp",
        str(seccomp_fd),
    ]
    if not as_root:
        args += ["--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
        if _bwrap_knows("--disable-userns"):  # bubblewrap 0.8 and later; the filter refuses them anyway
            args.append("--disable-userns")
    args += _system()
    made: set[str] = {"/", "/usr", "/etc", "/tmp", "/dev", "/dev/shm", "/proc"}
    mounts = [*python_mounts(), labtrain_job_mount(), Mount(spec.workdir, JOB_ROOT, writable=True), *spec.mounts]
    for mount in mounts:  # in this order: a mount inside /job goes over the job folder's own
        args += _parents(mount.target, made)
        args += ["--bind" if mount.writable else "--ro-bind", str(mount.source), mount.target]
        made.add(mount.target)
    for device in spec.devices:
        args += ["--dev-bind", device, device]
    args += ["--chdir", spec.cwd, "--clearenv"]
    for name, value in {**base_env(spec), "JOB_EVENTS_FD": str(events_fd)}.items():
        args += ["--setenv", name, value]
    args.append("--")
    if as_root:  # drop to an unprivileged uid, with no capability left to regain
        args += [
            "setpriv",
            "--reuid",
            str(SANDBOX_UID),
            "--regid",
            str(SANDBOX_UID),
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ]
    return args + spec.argv


def base_env(spec: SandboxSpec) -> dict[str, str]:
    threads = str(max(1, int(spec.limits.cpus)))
    return {
        "PATH": f"{python_environment().bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": f"{JOB_ROOT}/home",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "USER": "student",  # there is no /etc/passwd to look the uid up in
        "LOGNAME": "student",
        "PYTHONPATH": LABTRAIN_JOB_DIR,
        "PYTHONUNBUFFERED": "1",  # the job's log shows each line as it is printed
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": threads,  # as many threads as the job has CPUs
        "MKL_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "TF_CPP_MIN_LOG_LEVEL": "1",
        **spec.env,
    }


def launch_command(spec: SandboxSpec, group: JobCgroup | None, inner: list[str]) -> list[str]:
    """`sh` joins the cgroup(s), then becomes the session keyring's helper (in a sandbox), then
    prlimit, which becomes the sandbox."""
    join = "".join(f'echo $$ > "{path}" && ' for path in group.procs_files) if group else ""
    if spec.ignore_sigterm:  # inherited through each exec below
        join = "trap '' TERM && " + join
    keyring = [sys.executable, "-I", "-S", str(SESSION_KEYRING)] if group else []
    limits = [f"--fsize={spec.file_size_limit}", f"--nofile={spec.max_open_files}"]
    return ["sh", "-c", f'{join}exec "$@"', "sh", *keyring, "prlimit", *limits, "--", *inner]


def start_process(spec: SandboxSpec, group: JobCgroup | None, inner: list[str], **streams: Any) -> subprocess.Popen:
    """`inner` behind the launcher (its cgroup, keyring and limits), in the job's folder, with
    none of this process's environment."""
    return subprocess.Popen(
        launch_command(spec, group, inner), env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, cwd=spec.workdir, **streams
    )


@functools.cache
def _bwrap_knows(option: str) -> bool:
    shown = subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=10)
    return option in shown.stdout + shown.stderr


def _system() -> list[str]:
    # /tmp and /dev/shm private, writable by the program (PyTorch's data loaders share memory there).
    args = ["--ro-bind", "/usr", "/usr", "--proc", "/proc", "--dev", "/dev",
            "--perms", "01777", "--tmpfs", "/tmp", "--perms", "01777", "--tmpfs", "/dev/shm",
            "--perms", "0755", "--dir", "/etc"]  # fmt: skip
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():  # a merged /usr (Debian, Ubuntu, Fedora)
            args += ["--symlink", os.readlink(path), f"/{name}"]
        elif path.is_dir():
            args += ["--ro-bind", str(path), f"/{name}"]
    for name in ETC_ENTRIES:
        if (Path("/etc") / name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    return args


def _parents(target: str, made: set[str]) -> list[str]:
    """Directories leading to a mount point, world-readable (bwrap would copy the host's modes,
    and /root is 0700: the unprivileged program could not reach a Python installed there)."""
    args = []
    parts = Path(target).parts
    for depth in range(2, len(parts)):
        folder = str(Path(*parts[:depth]))
        if folder not in made:
            args += ["--perms", "0755", "--dir", folder]
            made.add(folder)
    return args


class Sandbox:
    """A running sandbox: its output, its reports, and stopping it."""

    def __init__(
        self,
        spec: SandboxSpec,
        hierarchy: Hierarchy | None,
        on_output: Callable[[str, str], None],
        enforce: bool = True,
    ):
        self.spec, self.hierarchy, self.on_output, self.enforce = spec, hierarchy, on_output, enforce
        self.group: JobCgroup | None = None
        self.proc: subprocess.Popen | None = None
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL)
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._sent_bytes = 0
        self._sent_rows = 0
        self._told: set[str] = set()
        self._counting = threading.Lock()  # three readers count against the same caps
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        read_end, write_end = os.pipe()
        try:
            if self.enforce:
                self.group = self.hierarchy.create(self.spec.name, self.spec.limits)
                inner = bwrap_command(self.spec, write_end, as_root=os.geteuid() == 0)
            else:
                inner = self._unsandboxed(write_end)
            self.proc = start_process(
                self.spec,
                self.group,
                inner,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(write_end,),
                start_new_session=not self.enforce,
            )
        except BaseException:
            os.close(read_end)
            self.close()
            raise
        finally:
            os.close(write_end)
        self._read(self.proc.stdout, lambda line: self._output("stdout", line), MAX_OUTPUT_LINE)
        self._read(self.proc.stderr, self._stderr_line, MAX_OUTPUT_LINE)
        self._read(os.fdopen(read_end, "rb"), self._event_line, MAX_EVENT_LINE)

    def _unsandboxed(self, events_fd: int) -> list[str]:
        """The program as a plain process (single-user local mode only, when the settings say so)."""
        env = {
            **base_env(self.spec),
            "JOB_EVENTS_FD": str(events_fd),
            "HOME": str(self.spec.workdir / "home"),
            "PYTHONPATH": str(labtrain_job_folder().parent),
        }
        # Paths inside name the host's folders: a mount's own source (the checkpoints kept
        # across attempts, the data set), else the job folder.
        places = [(m.target, str(m.source)) for m in self.spec.mounts] + [(JOB_ROOT, str(self.spec.workdir))]

        def host(value: str) -> str:
            for inside, outside in places:
                if value == inside or value.startswith(inside + "/"):
                    return outside + value[len(inside) :]
            return value.replace(JOB_ROOT, str(self.spec.workdir))

        env = {k: host(v) for k, v in env.items()}
        argv = [host(a) for a in self.spec.argv]
        cwd = host(self.spec.cwd)
        return ["env", "-i", *(f"{k}={v}" for k, v in env.items()), "sh", "-c", f'cd "{cwd}" && exec "$@"', "sh", *argv]

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def events(self, timeout: float) -> list[dict[str, Any]]:
        """Reports waiting (up to `timeout` seconds for the first)."""
        try:
            found = [self._events.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                found.append(self._events.get_nowait())
            except queue.Empty:
                return found

    def terminate(self) -> None:
        """SIGTERM to the program and whatever it started (not to bwrap, which would kill them at once)."""
        if self.group is not None:
            self.group.signal_all(signal.SIGTERM, spare=self.proc.pid if self.proc else None)
        elif self.proc is not None:
            _signal_session(self.proc.pid, signal.SIGTERM)

    def signal_program(self, signum: int) -> bool:
        """Send `signum` to the program alone (not to what it started, which may not handle it):
        in a sandbox, the process bwrap's init started; unsandboxed, the process itself.
        Whether there was one to signal."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        pid = self._program_pid() if self.group is not None else self.proc.pid
        if pid is None:
            return False
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return False
        return True

    def _program_pid(self) -> int | None:
        # bwrap (self.proc) -> its init, pid 1 of the sandbox -> the program (sh, prlimit and
        # setpriv exec, so they are the same processes). Processes the init adopted later
        # are younger than the program.
        parents = {pid: _parent_and_start(pid) for pid in self.group.pids()}
        inits = [pid for pid, found in parents.items() if found and found[0] == self.proc.pid]
        children = [(found[1], pid) for pid, found in parents.items() if found and found[0] in inits]
        return min(children)[1] if children else None

    def kill(self) -> None:
        if self.group is not None:
            self.group.kill_all()
        elif self.proc is not None:
            _signal_session(self.proc.pid, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        returncode = self.proc.wait(timeout)
        for thread in self._threads:
            thread.join(timeout=5)
        return returncode

    def stop(self, grace_s: float) -> None:
        """Ask it to end, then make it."""
        self.terminate()
        deadline = time.monotonic() + grace_s
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.kill()

    def oom_killed(self) -> bool:
        return self.group is not None and self.group.oom_killed()

    def close(self) -> None:
        """Nothing of the sandbox left: its processes killed, its cgroup removed."""
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
            self.proc.wait(timeout=10)
        if self.group is not None:
            self.group.remove()

    # -- reading what it says -------------------------------------------------------------
    def _read(self, stream, handle: Callable[[str], None], most: int) -> None:
        def pump():
            with stream:
                for raw in iter(lambda: stream.readline(MAX_EVENT_LINE + 1), b""):
                    handle(raw[:most].decode(errors="replace").rstrip("\n"))

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _stderr_line(self, line: str) -> None:
        self.stderr_tail.append(line)  # for the error message, even past the caps
        self._output("stderr", line)

    def _output(self, stream: str, line: str) -> None:
        if self._admit(len(line) + 1, row=False):
            self.on_output(stream, line)

    def _event_line(self, line: str) -> None:
        event = parse_event(line)
        admitted = self._admit(len(line) + 1, row=becomes_row(event))
        if event is None or (not admitted and event["kind"] in ("report", "cell")):
            return  # what would be logged or recorded; a saved model's or a failed cell's word still counts
        if self._events.qsize() >= MAX_WAITING_EVENTS:
            with self._counting:
                self._tell("waiting", "the job reported faster than the worker could record it; some were dropped")
            return
        self._events.put(event)

    def _admit(self, size: int, row: bool) -> bool:
        """Whether a line of the program's fits in what it may still send."""
        with self._counting:
            self._sent_bytes += size
            self._sent_rows += row
            if self._sent_bytes > MAX_OUTPUT_BYTES:
                reason = "bytes"
                message = (
                    f"the job sent more than {MAX_OUTPUT_BYTES // (1024 * 1024)} MB to its log (stdout, stderr and "
                    "its reports together); the rest of its output and reports is dropped"
                )
            elif row and self._sent_rows > MAX_EVENT_ROWS:
                reason = "rows"
                message = (
                    f"the job sent more than {MAX_EVENT_ROWS} epoch reports and notebook cells; the rest is "
                    "dropped (report once an epoch, not once a batch)"
                )
            else:
                return True
            self._tell(reason, message)
            return False

    def _tell(self, reason: str, message: str) -> None:
        """Once a reason (under the lock): a note the trainer puts in the job's log, read like a report."""
        if reason not in self._told:
            self._told.add(reason)
            self._events.put({"kind": "dropped", "message": message})


def becomes_row(event: dict[str, Any] | None) -> bool:
    """Whether the trainer records this event as a row of the job's events (an epoch, a cell)."""
    if event is None:
        return False
    return event["kind"] == "cell" or (event["kind"] == "report" and event["epoch"] is not None)


def parse_event(line: str) -> dict[str, Any] | None:
    """A line labtrain_job wrote (a report, a notebook's cell, a saved model or its error) as
    {"kind": ..., ...}, or None for anything else: the values are checked, never trusted."""
    try:
        raw = json.loads(line)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    if isinstance(raw.get("metrics"), dict):
        metrics = {
            str(k)[:64]: float(v)
            for k, v in list(raw["metrics"].items())[:50]
            if isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < float("inf")
        }
        epoch = raw.get("epoch")
        if epoch is not None and not _count(epoch):
            return None
        return {"kind": "report", "epoch": epoch, "metrics": metrics}
    if "cell" in raw:
        if not (_count(raw["cell"]) and _count(raw.get("cells"))):
            return None
        return {"kind": "cell", "cell": raw["cell"], "cells": raw["cells"], "line": _text(raw.get("line"), 200)}
    failed = raw.get("cell_failed")
    if isinstance(failed, dict):
        number, total = failed.get("cell"), failed.get("cells")
        return {
            "kind": "cell_failed",
            "cell": number if _count(number) else None,
            "cells": total if _count(total) else None,
            "line": _text(failed.get("line"), 200),
            "error": _text(failed.get("error"), 4000),
        }
    if "model_saved" in raw:
        return {"kind": "model_saved", "path": _text(raw["model_saved"], 200)}
    if "model_error" in raw:
        return {"kind": "model_error", "message": _text(raw["model_error"], 6000)}
    return None


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1_000_000


def _text(value: Any, most: int) -> str:
    return value[:most] if isinstance(value, str) else ""


def _parent_and_start(pid: int) -> tuple[int, int] | None:
    """A process's parent and start time (clock ticks after boot), from /proc/<pid>/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after the command's name, which may hold spaces
    return int(fields[1]), int(fields[19])


def _signal_session(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)
