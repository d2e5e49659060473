"""Kernel limits for one sandbox: a control group per job attempt, holding its memory, its
number of processes and its CPU time, on cgroup v2 or on v1 (whichever the machine mounts).

The job's cgroups live under a `labtrain` group of each hierarchy (or under the folder
LABTRAIN_CGROUP_ROOT names, e.g. a subtree delegated to the service's user). A process
joins by writing its pid to `cgroup.procs` before it starts the sandbox, so nothing the
student runs is ever outside its limits.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_MOUNT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "pids", "cpu")
CPU_PERIOD_US = 100_000
# An empty group younger than this may be one another worker is filling: sweep leaves it.
STALE_AFTER_S = 120.0


class CgroupError(RuntimeError):
    """The machine cannot give a sandbox its limits (no cgroup it may write, a controller missing)."""


@dataclass(frozen=True)
class Limits:
    memory_bytes: int
    max_processes: int
    cpus: float


class JobCgroup:
    """The cgroup (v2) or the cgroups (v1, one per controller) of one sandbox."""

    def __init__(self, version: int, folders: dict[str, Path]):
        self.version, self.folders = version, folders  # v2: {"unified": path}; v1: by controller

    @property
    def procs_files(self) -> list[Path]:
        """Where a process writes its pid to join (every one of them, on v1)."""
        return [folder / "cgroup.procs" for folder in self.folders.values()]

    def pids(self) -> list[int]:
        folder = self.folders.get("unified") or self.folders["pids"]
        try:
            return [int(line) for line in (folder / "cgroup.procs").read_text().split()]
        except FileNotFoundError:
            return []

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of this sandbox for going over its memory limit."""
        if self.version == 2:
            text = _read(self.folders["unified"] / "memory.events")
        else:
            text = _read(self.folders["memory"] / "memory.oom_control")
        counts = dict(line.split() for line in text.splitlines() if len(line.split()) == 2)
        return int(counts.get("oom_kill", 0)) > 0

    def memory_peak(self) -> int | None:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        folder = self.folders.get("unified") or self.folders["memory"]
        text = _read(folder / name)
        return int(text) if text.strip().isdigit() else None

    def signal_all(self, signum: int, spare: int | None = None) -> None:
        for pid in self.pids():
            if pid != spare:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)

    def kill_all(self, timeout: float = 5.0) -> None:
        """SIGKILL everything in the group until it is empty (a fork bomb included: pids.max bounds it)."""
        if self.version == 2 and (self.folders["unified"] / "cgroup.kill").exists():
            (self.folders["unified"] / "cgroup.kill").write_text("1")
        deadline = time.monotonic() + timeout
        while self.pids() and time.monotonic() < deadline:
            self.signal_all(signal.SIGKILL)
            time.sleep(0.01)

    def remove(self) -> None:
        self.kill_all()
        for folder in self.folders.values():
            with contextlib.suppress(FileNotFoundError):
                folder.rmdir()


class Hierarchy:
    """Where this machine's cgroups are, and how to make a job's."""

    def __init__(self, root: Path | None = None):
        self.version, self.parents = self._find(root)

    def create(self, name: str, limits: Limits) -> JobCgroup:
        folders = {controller: parent / name for controller, parent in self.parents.items()}
        for folder in folders.values():
            folder.mkdir(exist_ok=True)
        group = JobCgroup(self.version, folders)
        try:
            if self.version == 2:
                self._limit_v2(folders["unified"], limits)
            else:
                self._limit_v1(folders, limits)
        except OSError as exc:
            group.remove()
            raise CgroupError(f"cannot set the sandbox's limits: {exc}") from exc
        return group

    def describe(self) -> str:
        return f"cgroup v{self.version} (memory, pids, cpu) under {', '.join(map(str, self.parents.values()))}"

    def sweep(self, older_than_s: float = STALE_AFTER_S) -> None:
        """Remove the empty groups sandboxes left (a worker killed before it could clean up).
        A group with processes in it is some other worker's running sandbox, and a young empty
        one is a sandbox another worker is making (its group exists a moment before its
        process is put in): neither is touched."""
        first = next(iter(self.parents.values()))
        for folder in [folder for folder in first.iterdir() if folder.is_dir()]:
            try:
                if time.time() - folder.stat().st_mtime < older_than_s:
                    continue
            except OSError:  # gone meanwhile
                continue
            stale = JobCgroup(self.version, {c: parent / folder.name for c, parent in self.parents.items()})
            if stale.pids():
                continue
            for folder in stale.folders.values():
                try:
                    folder.rmdir()
                except OSError:  # gone already, or a process came in meanwhile
                    pass

    @staticmethod
    def _limit_v2(folder: Path, limits: Limits) -> None:
        (folder / "memory.max").write_text(str(limits.memory_bytes))
        if (folder / "memory.swap.max").exists():
            (folder / "memory.swap.max").write_text("0")  # over the limit means killed, not swapped
        (folder / "pids.max").write_text(str(limits.max_processes))
        (folder / "cpu.max").write_text(f"{int(limits.cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}")

    @staticmethod
    def _limit_v1(folders: dict[str, Path], limits: Limits) -> None:
        memory = folders["memory"]
        (memory / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
        if (memory / "memory.memsw.limit_in_bytes").exists():
            (memory / "memory.memsw.limit_in_bytes").write_text(str(limits.memory_bytes))
        (folders["pids"] / "pids.max").write_text(str(limits.max_processes))
        (folders["cpu"] / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
        (folders["cpu"] / "cpu.cfs_quota_us").write_text(str(int(limits.cpus * CPU_PERIOD_US)))

    @staticmethod
    def _find(root: Path | None) -> tuple[int, dict[str, Path]]:
        unified = CGROUP_MOUNT / "cgroup.controllers"
        if unified.exists():  # cgroup v2 alone
            parent = root or CGROUP_MOUNT / "labtrain"
            missing = {"memory", "pids", "cpu"} - set(unified.read_text().split())
            if missing:
                raise CgroupError(f"cgroup v2 lacks the {', '.join(sorted(missing))} controller(s)")
            _make(parent)
            wanted = " ".join(f"+{c}" for c in ("memory", "pids", "cpu"))
            try:
                for folder in (parent.parent, parent):  # children may use what their parent delegates
                    (folder / "cgroup.subtree_control").write_text(wanted)
            except OSError as exc:
                raise CgroupError(f"cannot delegate memory, pids and cpu to {parent}: {exc}") from exc
            return 2, {"unified": parent}
        parents = {}
        for controller in V1_CONTROLLERS:  # cgroup v1, one hierarchy per controller
            mount = CGROUP_MOUNT / controller
            if not (mount / "cgroup.procs").exists():
                raise CgroupError(f"no cgroup v2, and cgroup v1 has no {controller} controller at {mount}")
            parents[controller] = (root / controller) if root else mount / "labtrain"
            _make(parents[controller])
        return 1, parents


@functools.cache  # one per process and root: making it writes the hierarchy's own settings
def shared(root: Path | None = None) -> Hierarchy:
    """This machine's hierarchy (under `root`, else the default), made once; a CgroupError is
    raised again at each call until it can be made."""
    return Hierarchy(root)


def _make(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CgroupError(
            f"cannot create {folder}: {exc} (a worker that runs code jobs needs root, or a "
            "cgroup subtree delegated to its user named in LABTRAIN_CGROUP_ROOT)"
        ) from exc
    if not os.access(folder, os.W_OK):
        raise CgroupError(f"cannot write to {folder}")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
