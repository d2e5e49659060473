"""Can this worker make a sandbox? It tries once at start: a cgroup with limits, and a
program run by bubblewrap in it. The answer goes into its heartbeat, so a server where no
worker can sandbox refuses code jobs at submit time instead of failing them later."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from service.core.config import Settings
from service.sandbox import cgroups, disk
from service.sandbox.box import Sandbox, SandboxSpec
from service.sandbox.cgroups import CgroupError, Hierarchy, Limits


def capabilities(settings: Settings) -> dict[str, str]:
    """{"sandbox": what it is} when code jobs can run here, else {"sandbox_error": why not};
    with {"job_disk": how a job is held to its disk limits}."""
    if disk.unavailable() is None:
        disk.sweep()  # what a worker killed before it could unmount left
    return {**_sandbox(settings), "job_disk": disk.describe(settings.max_job_disk_mb, settings.code_max_files)}


def _sandbox(settings: Settings) -> dict[str, str]:
    if settings.code_sandbox != "required":
        return {"sandbox": "off (LABTRAIN_CODE_SANDBOX=off: code runs unsandboxed)"}
    problem = sandbox_problem(settings.cgroup_root)
    if problem is not None:
        return {"sandbox_error": problem}
    version = subprocess.run(["bwrap", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    return {"sandbox": f"{version}, {cgroups.shared(settings.cgroup_root).describe()}"}


def sandbox_problem(cgroup_root: Path | None) -> str | None:
    """Why this machine cannot make a sandbox, or None when a test sandbox ran."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed"
    try:
        hierarchy = cgroups.shared(cgroup_root)
        hierarchy.sweep()
        _try(hierarchy)
    except (CgroupError, OSError, RuntimeError, subprocess.SubprocessError) as exc:
        return str(exc)[:500]
    return None


def _try(hierarchy: Hierarchy) -> None:
    with tempfile.TemporaryDirectory(prefix="labtrain-probe-") as folder:
        workdir = Path(folder)
        workdir.chmod(0o777)
        spec = SandboxSpec(
            name=f"probe-{uuid.uuid4().hex[:8]}",
            workdir=workdir,
            argv=["/bin/true"],
            cwd="/job",
            env={},
            limits=Limits(256 * 1024 * 1024, 16, 1),
            file_size_limit=1024 * 1024,
        )
        lines: list[str] = []
        box = Sandbox(spec, hierarchy, lambda _stream, line: lines.append(line))
        try:
            box.start()
            returncode = box.wait(timeout=30)
        finally:
            box.close()
        if returncode != 0:
            raise RuntimeError(f"a test sandbox failed (status {returncode}): {' '.join(lines)[:300]}")
