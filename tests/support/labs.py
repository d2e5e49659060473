"""The deployment code-job tests run against (PostgreSQL, Redis, a dispatcher, sandboxing
workers, the API), as the module-scoped fixture `lab`. A test module imports the fixture and
says how its deployment differs in a module-level `LAB = LabSetup(...)`:

    from tests.support.labs import CodeLab, LabSetup, lab  # noqa: F401 (lab: the fixture)

    LAB = LabSetup("notebook-lab", env={"LABTRAIN_CODE_MEMORY_MB": "3000"})

A module runs its tests on both backends, its cpu queue on Celery workers and on the SLURM test
cluster's partition (each job a `labtrain worker run-one` on the node), with

    pytestmark = pytest.mark.parametrize("lab", BACKENDS, indirect=True, scope="module")
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pytest

from tests.support.processes import Deployment, deployment_env, serving
from tests.support.slurm_cluster import CPU_PARTITION

SCRIPTS = Path(__file__).parents[1] / "service" / "code" / "scripts"  # the course's scripts the tests run
ATTACK = Path(__file__).parents[1] / "service" / "sandbox" / "attack.py"  # escapes and attacks, by argument
ONE_WORKER = (["--queues", "cpu", "--concurrency", "1", "--name", "w1"],)
BACKENDS = ["celery", "slurm"]  # what serves the lab's cpu queue


class CodeLab(Deployment):
    """A deployment running code jobs, with what their tests ask of it."""

    def upload(self, name: str, data: bytes) -> str:
        created = self.client.post("/api/v1/sources", files={"file": (name, data)})
        assert created.status_code == 201, created.text
        return created.json()["id"]

    def source(self, script: str) -> str:
        """One of tests/service/code/scripts, uploaded."""
        return self.upload(script, (SCRIPTS / script).read_bytes())

    def submit(self, spec: dict) -> str:
        created = self.client.post("/api/v1/jobs", json=spec)
        assert created.status_code == 201, created.text
        return created.json()["id"]

    def events(self, job_id: str) -> list[dict]:
        return self.client.get(f"/api/v1/jobs/{job_id}/events").json()["items"]

    def epochs(self, job_id: str) -> list[dict]:
        return [e["data"] for e in self.events(job_id) if e["type"] == "epoch"]

    def log(self, job_id: str) -> str:
        return self.client.get(f"/api/v1/jobs/{job_id}/log").text


class AttackLab(CodeLab):
    """A deployment whose user uploaded the attack script (tests/service/sandbox/attack.py),
    run with its arguments."""

    @cached_property
    def attack(self) -> str:
        return self.upload("attack.py", ATTACK.read_bytes())

    def job(self, *args: str, timeout: float = 120, **spec) -> dict:
        created = self.client.post("/api/v1/jobs", json={"code": {"source": self.attack, "args": list(args)}, **spec})
        assert created.status_code == 201, created.text
        return self.client.wait_for(created.json()["id"], timeout=timeout)

    def result(self, job: dict) -> dict:
        response = self.client.get(f"/api/v1/jobs/{job['id']}/artifacts/result.json")
        assert response.status_code == 200, (job, response.text)
        return response.json()

    def next_job_succeeds(self) -> None:
        job = self.job("ok")
        assert job["status"] == "succeeded", job["error"]
        assert self.result(job) == {"ok": True}


def host_processes_with(marker: str) -> list[int]:
    """The processes on this machine whose command line holds `marker` (a sandbox's left behind)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@dataclass(frozen=True)
class LabSetup:
    name: str  # its home folder's prefix
    user: str = "student"
    workers: tuple[list[str], ...] = ONE_WORKER  # each worker's arguments
    env: dict[str, str] = field(default_factory=dict)  # settings besides the database's and the broker's
    kind: type[Deployment] = CodeLab
    prepare: Callable[[Path], None] | None = None  # given the home folder before anything starts


@pytest.fixture(scope="module")
def lab(request, tmp_path_factory, make_pg_database, make_redis_url):
    """The deployment the test module's LAB describes, for the module's tests."""
    setup: LabSetup = request.module.LAB
    if getattr(request, "param", "celery") == "slurm":
        request.getfixturevalue("slurm_cluster")  # started, and SLURM_CONF set for the processes
        setup = on_slurm(setup)
    home = tmp_path_factory.mktemp(setup.name)
    env = deployment_env(
        home, LABTRAIN_DATABASE_URL=make_pg_database(), LABTRAIN_BROKER_URL=make_redis_url(), **setup.env
    )
    if setup.prepare is not None:
        setup.prepare(home)
    first, *more = setup.workers
    with serving(env, home, setup.user, first, more_workers=tuple(more), kind=setup.kind) as deployment:
        yield deployment


def on_slurm(setup: LabSetup) -> LabSetup:
    """The same deployment with its cpu queue on the SLURM cluster's partition, its nodes
    sandboxing code jobs. Its Celery workers stay on cpu, idle (the dispatcher sends that queue's
    jobs to SLURM): none serves gpu, so a job's device `auto` is cpu as before."""
    queues = {
        "cpu": {"backend": "slurm", "partition": CPU_PARTITION, "depth": 1, "poll_s": 0.5, "sandbox": "bubblewrap"}
    }
    return dataclasses.replace(
        setup, name=f"{setup.name}-slurm", env={**setup.env, "LABTRAIN_QUEUES": json.dumps(queues)}
    )


def _admins_token(home: Path) -> None:
    (home / "token").write_text("the admin's token\n")  # what `labtrain up` keeps there


# The escapes' and the kernel attacks' deployment (tests/service/sandbox): tight limits, and the
# admin's token where `labtrain up` keeps it, for an attack to look for.
ATTACKED_LAB = LabSetup(
    "sandbox-lab",
    user="mallory",
    workers=(["--queues", "cpu", "--concurrency", "1"],),
    env={
        "LABTRAIN_MAX_OUTPUTS_MB": "5",
        "LABTRAIN_STOP_GRACE_S": "4",
        "LABTRAIN_CODE_MAX_PROCESSES": "100",
        "LABTRAIN_CODE_MEMORY_MB": "400",
    },
    kind=AttackLab,
    prepare=_admins_token,
)
