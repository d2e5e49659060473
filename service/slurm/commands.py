"""SLURM's commands, each run with a timeout and its output parsed: sbatch, squeue, scancel, sinfo.

Arguments are passed as a list (no shell); what SLURM prints is read as `|`-separated fields in
formats chosen here. A command that fails or hangs raises SlurmError with what it printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# States in which SLURM still holds the job (it may yet run, or runs); every other state is an end.
ACTIVE = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
        "RESV_DEL_HOLD",
    }
)
SEPARATOR = "|"


class SlurmError(RuntimeError):
    pass


@dataclass(frozen=True)
class SlurmJob:
    id: str
    name: str
    state: str  # RUNNING, PENDING, COMPLETED, TIMEOUT, NODE_FAIL, CANCELLED, ...
    reason: str
    partition: str
    nodes: str
    start: str  # the start time, or SLURM's estimate for a pending job ("N/A" when none)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def started(self) -> bool:
        return self.state not in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED")


@dataclass(frozen=True)
class Node:
    name: str
    state: str
    cpus: int
    memory_mb: int
    gres: str


class Slurm:
    """SLURM's command-line tools on this host (SLURM_CONF, PATH: as the process was given)."""

    def __init__(self, timeout_s: float = 20.0, environ: Mapping[str, str] | None = None):
        self.timeout_s = timeout_s
        self.environ = dict(os.environ if environ is None else environ)

    def available(self) -> bool:
        return shutil.which("sbatch", path=self.environ.get("PATH")) is not None

    def sbatch(self, options: list[str], script: str, environment: Mapping[str, str]) -> str:
        """Submit `script` (read on stdin) with `options`; its environment is `environment` alone,
        never on a command line. Returns the SLURM job id."""
        env = {**environment}
        for name in ("PATH", "SLURM_CONF"):  # how this host finds SLURM
            if name in self.environ and name not in env:
                env[name] = self.environ[name]
        out = self._run(["sbatch", "--parsable", *options], stdin=script, env=env)
        job_id = out.strip().split(";")[0]
        if not job_id.isdigit():
            raise SlurmError(f"sbatch printed no job id: {out.strip()[:200]!r}")
        return job_id

    def jobs(self, partitions: Iterable[str] | None, name_prefix: str) -> dict[str, SlurmJob]:
        """The jobs SLURM holds in `partitions` (None: in every one; those that ended too, while
        SLURM keeps them: MinJobAge) whose name starts with `name_prefix`, by id."""
        fields = ("%i", "%j", "%T", "%r", "%P", "%N", "%S")
        where = [] if partitions is None else [f"--partition={','.join(partitions)}"]
        out = self._run(["squeue", "--noheader", "--states=all", *where, f"--format={SEPARATOR.join(fields)}"])
        jobs = {}
        for line in out.splitlines():
            parts = line.strip().split(SEPARATOR)
            if len(parts) != len(fields) or not parts[1].startswith(name_prefix):
                continue
            job = SlurmJob(*parts)
            jobs[job.id] = job
        return jobs

    def cancel(self, job_ids: Iterable[str]) -> None:
        ids = [i for i in job_ids if i.isdigit()]
        if ids:
            self._run(["scancel", *ids])

    def partitions(self) -> list[str]:
        """The names of SLURM's partitions (those this user may see)."""
        out = self._run(["sinfo", "--noheader", "--format=%R"])
        return sorted({line.strip() for line in out.splitlines() if line.strip()})

    def nodes(self, partition: str) -> list[Node]:
        out = self._run(["sinfo", "--noheader", "--Node", f"--partition={partition}", "--format=%N|%T|%c|%m|%G"])
        nodes = []
        for line in out.splitlines():
            parts = line.strip().split(SEPARATOR)
            if len(parts) == 5:
                name, state, cpus, memory, gres = parts
                nodes.append(Node(name, state, _int(cpus), _int(memory), gres))
        return nodes

    def _run(self, argv: list[str], stdin: str | None = None, env: Mapping[str, str] | None = None) -> str:
        try:
            done = subprocess.run(
                argv,
                input=stdin,
                env=dict(self.environ if env is None else env),
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
            )
        except subprocess.TimeoutExpired:
            raise SlurmError(f"{argv[0]} did not answer within {self.timeout_s:.0f} s") from None
        except OSError as exc:
            raise SlurmError(f"{argv[0]} could not run: {exc}") from None
        if done.returncode != 0:
            raise SlurmError(f"{argv[0]} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[:500]}")
        return done.stdout


def _int(text: str) -> int:
    digits = text.rstrip("+")
    return int(digits) if digits.isdigit() else 0
