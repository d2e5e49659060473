"""A real single-node SLURM cluster for the tests: Debian's slurm-wlm (22.05), slurmctld and
slurmd started as root with a slurm.conf generated in a temporary folder, stopped at the end.

No munge: AuthType=auth/none and CredType=cred/none, and JWTs besides (AuthAltTypes=auth/jwt, a
key in the folder) for slurmrestd (tests/support/slurmrestd.py); processes tracked by
proctrack/linuxproc, no task plugin, cons_tres selection. State and spool live in the folder.
Finished jobs are kept for MinJobAge seconds so squeue and scontrol still show how they ended
(sacct would need slurmdbd). Two partitions on the one node: CPU_PARTITION and GPU_PARTITION,
the latter with a gres `gpu` of GPUS devices; SLURM's gpu plugin drops a GPU that has no device
file, so each is a plain placeholder file in the folder (nothing opens it: no cgroup constrains
devices here).
A third, URGENT_PARTITION, has the higher priority tier: a job there that needs the node preempts
what runs in the others (PreemptMode=CANCEL: SIGTERM to every process of the job, SIGKILL
KillWait seconds later), as a cluster's preemption does.

Use the session fixture `slurm_cluster` (defined here, a plugin of tests/conftest.py, so that any
test module reaches the one cluster); its `env` is what a process needs to reach it (SLURM_CONF),
which the fixture also sets in this process's environment.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import free_port

NODE = "labtrain-n1"
CPU_PARTITION, GPU_PARTITION, URGENT_PARTITION = "labcpu", "labgpu", "laburgent"
GPUS = 2
MIN_JOB_AGE_S = 3600
KILL_WAIT_S = 5


class SlurmCluster:
    def __init__(self, folder: Path):
        self.folder = folder
        self.conf = folder / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.cpus = max(2, os.cpu_count() or 2)

    def start(self, timeout: float = 60) -> None:
        for tool in ("slurmctld", "slurmd", "sbatch"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"{tool} is not installed: `make debian-tools` installs slurm-wlm (as root)")
        if os.geteuid() != 0:
            raise RuntimeError("slurmd runs jobs as their users only when started as root; run the tests as root")
        for sub in ("state", "spool", "log"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        self._write_config()
        self._daemon(["slurmctld", "-f", str(self.conf)])
        self._daemon(["slurmd", "-f", str(self.conf), "-N", NODE])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.node_state().startswith("idle"):
                return
            time.sleep(0.3)
        raise RuntimeError(f"the SLURM node did not come up: {self.node_state()!r}\n{self.logs()}")

    def stop(self) -> None:
        """Cancel every job, then stop both daemons and wait for them (and each job's slurmstepd) to go."""
        self.run("scancel", f"--partition={CPU_PARTITION},{GPU_PARTITION},{URGENT_PARTITION}", check=False)
        deadline = time.monotonic() + KILL_WAIT_S + 15
        while time.monotonic() < deadline and (
            self.run("squeue", "--noheader", check=False).stdout.strip() or self._stepds()
        ):
            time.sleep(0.3)
        pids = [self._pid(name) for name in ("slurmctld.pid", f"slurmd-{NODE}.pid")]
        for pid in pids:
            if pid:
                _signal(pid, 15)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(pid and _alive(pid) for pid in pids):
            time.sleep(0.2)
        # A job's slurmstepd still reporting to the stopped slurmd would wait for it forever: it
        # goes, and whatever its job left running with it.
        for pid in self._stepds():
            for child in [*_descendants(pid), pid]:
                _signal(child, 9)

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=30)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
        return done

    def node_state(self) -> str:
        return self.run("sinfo", "--noheader", "--Node", "--format=%T", check=False).stdout.strip().split("\n")[0]

    def squeue(self) -> dict[str, str]:
        """The jobs SLURM still runs or holds (plain squeue: no ended ones), id -> state."""
        out = self.run("squeue", "--noheader", "--format=%i|%T").stdout
        return dict(line.split("|", 1) for line in out.split())

    def job(self, slurm_id: str) -> dict[str, str]:
        """`scontrol show job` as a mapping (JobState, Reason, TimeLimit, Account, TRES, ...)."""
        out = self.run("scontrol", "--oneliner", "show", "job", slurm_id).stdout
        return dict(word.split("=", 1) for word in out.split() if "=" in word)

    def set_node(self, state: str) -> None:
        """down (its jobs are killed) or resume."""
        self.run("scontrol", "update", f"nodename={NODE}", f"state={state}", "reason=labtrain-tests")

    def end_soon(self, slurm_id: str, seconds: int = 2) -> None:
        """Moves a running job's end `seconds` from now, as an admin may (`scontrol update
        EndTime`): slurmctld, which looks at time limits every 30 s, then ends it as TIMEOUT.
        Its TimeLimit stays as it was submitted."""
        end = datetime.now() + timedelta(seconds=seconds)  # slurmctld reads local time
        self.run("scontrol", "update", f"jobid={slurm_id}", f"EndTime={end:%Y-%m-%dT%H:%M:%S}")

    def preempt(self, seconds: int = 3) -> str:
        """Submit a job to the urgent partition that needs the whole node, for `seconds`: SLURM
        preempts what runs there. Its SLURM id."""
        done = self.run(
            "sbatch", "--parsable", f"--partition={URGENT_PARTITION}", "--job-name=urgent", "--nodes=1",
            f"--cpus-per-task={self.cpus}", "--mem=100M", f"--output={self.folder / 'log' / 'urgent-%j.out'}",
            f"--wrap=sleep {seconds}",
        )  # fmt: skip
        return done.stdout.strip().split(";")[0]

    def fill_node(self, minutes: int = 10) -> str:
        """A job of someone else's on CPU_PARTITION that takes every CPU of the node for
        `minutes` (its --time): SLURM plans what comes after it. Its SLURM id, once it runs."""
        done = self.run(
            "sbatch", "--parsable", f"--partition={CPU_PARTITION}", "--job-name=other", "--nodes=1",
            f"--cpus-per-task={self.cpus}", "--mem=100M", f"--time={minutes}", "--output=/dev/null",
            f"--wrap=sleep {minutes * 60}",
        )  # fmt: skip
        slurm_id = done.stdout.strip().split(";")[0]
        deadline = time.monotonic() + 30
        while self.squeue().get(slurm_id) != "RUNNING":
            if time.monotonic() > deadline:
                raise RuntimeError(f"the filling job did not start: {self.squeue()}")
            time.sleep(0.2)
        return slurm_id

    def logs(self) -> str:
        return "\n".join(
            f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in (self.folder / "log").glob("*")
        )

    def _write_config(self) -> None:
        folder = self.folder
        fake_gpus = [folder / f"gpu{i}" for i in range(GPUS)]
        jwt_key = folder / "jwt_hs256.key"  # slurmctld signs and checks `scontrol token`'s JWTs with it
        jwt_key.write_bytes(os.urandom(32))
        jwt_key.chmod(0o600)
        for path in fake_gpus:
            path.touch()
        self.conf.write_text(
            "\n".join(
                [
                    f"ClusterName=labtrain{os.getpid()}",
                    "SlurmctldHost=localhost(127.0.0.1)",
                    f"SlurmctldPort={free_port()}",
                    f"SlurmdPort={free_port()}",
                    "AuthType=auth/none",
                    "AuthAltTypes=auth/jwt",
                    f"AuthAltParameters=jwt_key={jwt_key}",
                    "CredType=cred/none",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core_Memory",
                    "MpiDefault=none",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    f"StateSaveLocation={folder / 'state'}",
                    f"SlurmdSpoolDir={folder / 'spool'}",
                    f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
                    f"SlurmdPidFile={folder / 'slurmd-%n.pid'}",
                    f"SlurmctldLogFile={folder / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={folder / 'log' / 'slurmd-%n.log'}",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    "SchedulerType=sched/backfill",
                    # Backfill plans pending jobs' starts (what squeue --start shows) every second.
                    "SchedulerParameters=bf_interval=1",
                    "PreemptType=preempt/partition_prio",
                    "PreemptMode=CANCEL",
                    f"MinJobAge={MIN_JOB_AGE_S}",
                    f"KillWait={KILL_WAIT_S}",
                    # A node an admin set DOWN stays down until resumed (as the tests do).
                    "ReturnToService=1",
                    "InactiveLimit=0",
                    "DefMemPerCPU=256",
                    "GresTypes=gpu",
                    f"NodeName={NODE} NodeHostname={socket.gethostname()} NodeAddr=127.0.0.1 CPUs={self.cpus} "
                    f"RealMemory=8000 Gres=gpu:{GPUS} State=UNKNOWN",
                    f"PartitionName={CPU_PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP PriorityTier=1",
                    f"PartitionName={GPU_PARTITION} Nodes={NODE} MaxTime=INFINITE State=UP PriorityTier=1",
                    f"PartitionName={URGENT_PARTITION} Nodes={NODE} MaxTime=INFINITE State=UP PriorityTier=2 "
                    "PreemptMode=OFF",
                    "",
                ]
            )
        )
        files = f"{folder}/gpu[0-{GPUS - 1}]"
        (folder / "gres.conf").write_text(f"NodeName={NODE} Name=gpu Count={GPUS} File={files}\n")

    def _daemon(self, argv: list[str]) -> None:
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} did not start: {done.stderr.strip()}\n{self.logs()}")

    def _stepds(self) -> list[int]:
        """This cluster's slurmstepd processes: those working in its folder."""
        found = []
        for proc in Path("/proc").iterdir():
            try:
                if (
                    proc.name.isdigit()
                    and (proc / "cmdline").read_bytes().startswith(b"slurmstepd")
                    and (str(self.folder) in os.readlink(proc / "cwd"))
                ):
                    found.append(int(proc.name))
            except OSError:  # gone meanwhile
                continue
        return found

    def _pid(self, name: str) -> int | None:
        path = self.folder / name
        text = path.read_text().strip() if path.exists() else ""
        return int(text) if text.isdigit() else None


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    before = os.environ.get("SLURM_CONF")
    try:
        cluster.start()
    except RuntimeError as exc:
        cluster.stop()
        pytest.fail(str(exc))
    # The dispatcher's SLURM commands, here and in the processes tests start, reach this cluster.
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        cluster.stop()
        if before is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = before


def _descendants(pid: int) -> list[int]:
    parents = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit():
                stat = (proc / "stat").read_text()
                parents[int(proc.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
