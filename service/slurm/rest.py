"""SLURM through slurmrestd's REST API (openapi/v0.0.38, the newest SLURM 22.05 serves; 23.02 and
23.11 serve it too), where LABTRAIN_SLURMRESTD says so (service/slurm/rest_config.py): the same
methods and answers as the commands (service/slurm/commands.py), so the backend does not know
which it has.

A job goes in as sbatch would send it: the same batch script, the options sbatch_options made
turned into the job's properties, its environment in the request's body (never in a URL or a
log). The JWT is read at each call and sent only in its header. What differs from sbatch, in
22.05: `--signal=B:...` (signal the batch shell) is refused by slurmrestd, whose parser takes the
B flag from sbatch alone, so SLURM's warning before --time does not reach `worker run-one`
(preemption's SIGTERM still does, and the job's own watch stops it at its limit before --time);
and `"requeue": false` is read as true, so --no-requeue goes as `no_requeue`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter

from service.core.config import Settings
from service.slurm import rest_config
from service.slurm.commands import Node, Slurm, SlurmError, SlurmJob
from service.slurm.rest_config import RestConfig

API = "/slurm/v0.0.38"
# sbatch options whose value becomes one property as it is (strings), or as a number.
TEXT_OPTIONS = {
    "--job-name": "name",
    "--partition": "partition",
    "--nodes": "nodes",
    "--output": "standard_output",
    "--gres": "gres",
    "--account": "account",
    "--qos": "qos",
}
NUMBER_OPTIONS = {"--ntasks": "tasks", "--cpus-per-task": "cpus_per_task", "--time": "time_limit"}
# What the job's properties carry otherwise: the environment is the request's own.
LEFT_OUT = ("--export", "--signal")


def client(settings: Settings, timeout_s: float, environ: Mapping[str, str] | None = None) -> Slurm | SlurmRest:
    """slurmrestd where LABTRAIN_SLURMRESTD names it, else SLURM's commands on this host."""
    environ = os.environ if environ is None else environ
    config = rest_config.load(settings.slurmrestd, environ)
    return SlurmRest(config, timeout_s, environ) if config else Slurm(timeout_s=timeout_s, environ=environ)


class SlurmRest:
    def __init__(self, config: RestConfig, timeout_s: float = 20.0, environ: Mapping[str, str] | None = None):
        self.config, self.timeout_s = config, timeout_s
        self.environ = dict(os.environ if environ is None else environ)
        self._session = requests.Session()
        if config.socket:
            self._base = "http://slurmrestd"  # the host part is not used: the socket is
            self._session.trust_env = False  # no proxy between us and a socket
            self._session.mount(self._base, _UnixSocketAdapter(config.socket))
        else:
            self._base = config.url

    def available(self) -> bool:
        return True  # asked over the network: whether it answers shows at the first call

    def sbatch(self, options: list[str], script: str, environment: Mapping[str, str]) -> str:
        """Submit `script` with `options` (sbatch's, as script.sbatch_options makes them); its
        environment is `environment` and this host's PATH, as with sbatch. Returns the job id."""
        env = {name: value for name, value in environment.items() if name not in self._own_settings()}
        if "PATH" in self.environ and "PATH" not in env:
            env["PATH"] = self.environ["PATH"]
        job = {**_properties(options), "environment": env}
        # Not slurmrestd's own folder, which it would take: the job's, where its output goes.
        job["current_working_directory"] = str(Path(job.get("standard_output", "/tmp")).parent)
        answer = self._call("POST", "/job/submit", {"script": script, "job": job})
        job_id = str(answer.get("job_id", ""))
        if not job_id.isdigit():
            raise SlurmError(f"slurmrestd gave no job id for the submission: {_errors(answer) or answer!r:.200}")
        return job_id

    def jobs(self, partitions: Iterable[str] | None, name_prefix: str) -> dict[str, SlurmJob]:
        """As Slurm.jobs: those that ended too, while slurmctld keeps them (MinJobAge)."""
        wanted = None if partitions is None else set(partitions)
        jobs = {}
        for raw in self._call("GET", "/jobs").get("jobs", []):
            name, partition = str(raw.get("name", "")), str(raw.get("partition", ""))
            if not name.startswith(name_prefix) or (wanted is not None and partition not in wanted):
                continue
            job = SlurmJob(
                id=str(raw.get("job_id", "")),
                name=name,
                state=str(raw.get("job_state", "")),
                reason=str(raw.get("state_reason", "")),
                partition=partition,
                nodes=str(raw.get("nodes", "")),
                start=_local_time(raw.get("start_time")),
            )
            jobs[job.id] = job
        return jobs

    def cancel(self, job_ids: Iterable[str]) -> None:
        """scancel's signal (SIGKILL to the job: SLURM's own SIGTERM, KillWait, SIGKILL), one call
        a job; every one is tried before a failure is raised."""
        failures = []
        for job_id in (i for i in job_ids if i.isdigit()):
            try:
                self._call("DELETE", f"/job/{job_id}")
            except SlurmError as exc:
                failures.append(str(exc))
        if failures:
            raise SlurmError("; ".join(failures))

    def partitions(self) -> list[str]:
        found = self._call("GET", "/partitions").get("partitions", [])
        return sorted({str(p.get("name")) for p in found if p.get("name")})

    def nodes(self, partition: str) -> list[Node]:
        nodes = []
        for raw in self._call("GET", "/nodes").get("nodes", []):
            if partition in (raw.get("partitions") or []):
                nodes.append(
                    Node(
                        name=str(raw.get("name", "")),
                        state=_node_state(raw),
                        cpus=_int(raw.get("cpus")),
                        memory_mb=_int(raw.get("real_memory")),
                        gres=str(raw.get("gres") or ""),
                    )
                )
        return nodes

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        what = f"{method} {API}{path}"
        try:
            response = self._session.request(
                method,
                f"{self._base}{API}{path}",
                json=body,
                headers=self._auth_headers(),
                timeout=self.timeout_s,
                verify=str(self.config.ca_file) if self.config.ca_file else True,
            )
        except requests.Timeout:
            raise SlurmError(f"slurmrestd did not answer {what} within {self.timeout_s:.0f} s") from None
        except requests.RequestException as exc:
            raise SlurmError(f"slurmrestd at {self.config.url} could not be reached ({what}): {exc}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise SlurmError(
                f"slurmrestd answered {what} with HTTP {response.status_code}: {response.text.strip()[:300]}"
            )
        errors = _errors(answer)
        if response.status_code != 200 or errors:
            raise SlurmError(
                f"slurmrestd answered {what} with HTTP {response.status_code}: {errors or 'no reason given'}"
            )
        return answer

    def _auth_headers(self) -> dict[str, str]:
        if not self.config.uses_token:
            return {}  # rest_auth/local: slurmrestd knows who is on its socket
        return {"X-SLURM-USER-NAME": str(self.config.user), "X-SLURM-USER-TOKEN": self._token()}

    def _token(self) -> str:
        """Read at each call: an admin replaces the file (or restarts with a new variable) as tokens expire."""
        if self.config.token_file:
            try:
                token = self.config.token_file.read_text().strip()
            except OSError as exc:
                raise SlurmError(f"slurmrestd's token file {self.config.token_file} could not be read: {exc}") from None
            where = f"token file {self.config.token_file}"
        else:
            token, where = (self.environ.get(str(self.config.token_env)) or "").strip(), str(self.config.token_env)
        token = token.removeprefix("SLURM_JWT=")  # as `scontrol token` prints it
        if not token:
            raise SlurmError(f"slurmrestd's token is empty ({where})")
        return token

    def _own_settings(self) -> set[str]:
        """What a job must not inherit from the dispatcher: how it reaches slurmrestd, and the token."""
        return {rest_config.SETTING, *([self.config.token_env] if self.config.token_env else [])}


def _properties(options: list[str]) -> dict[str, Any]:
    """sbatch's options as v0.0.38's job properties; an option with none is an error, not dropped."""
    job: dict[str, Any] = {}
    for option in options:
        name, _, value = option.partition("=")
        if name in TEXT_OPTIONS:
            job[TEXT_OPTIONS[name]] = value
        elif name in NUMBER_OPTIONS and value.isdigit():
            job[NUMBER_OPTIONS[name]] = int(value)
        elif name == "--mem" and value.upper().removesuffix("M").isdigit():
            job["memory_per_node"] = int(value.upper().removesuffix("M"))  # MB
        elif name == "--no-requeue":
            job["no_requeue"] = True  # 22.05 reads "requeue": false as true
        elif name not in LEFT_OUT:
            raise SlurmError(f"slurmrestd: labtrain does not know how to pass sbatch's {option!r} to slurmrestd")
    return job


def _errors(answer: dict[str, Any]) -> str:
    """slurmrestd's errors, each as it says it (its description, else its error, and the code)."""
    said = []
    for error in answer.get("errors") or []:
        if not isinstance(error, dict):
            continue
        text = error.get("description") or error.get("error") or "error"
        code = error.get("error_number", error.get("error_code", error.get("errno")))
        line = f"{text} ({code})" if code not in (None, -1, 0) else str(text)
        if line not in said:
            said.append(line)
    return "; ".join(said)


def _local_time(epoch: Any) -> str:
    """As squeue prints %S: local time, or N/A when SLURM has none."""
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch <= 0:
        return "N/A"
    return datetime.fromtimestamp(epoch).isoformat(timespec="seconds")


def _node_state(raw: Mapping[str, Any]) -> str:
    """As sinfo's %T: idle, mixed, allocated, down, drained or draining, * when not responding."""
    state = str(raw.get("state") or "unknown").lower()
    flags = {str(f).upper() for f in raw.get("state_flags") or []}
    if "DRAIN" in flags:
        state = "draining" if state in ("allocated", "mixed") else "drained"
    return state + ("*" if "NOT_RESPONDING" in flags else "")


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class _UnixSocketConnection(urllib3.connection.HTTPConnection):
    def __init__(self, *args: Any, socket_path: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.socket_path = socket_path

    def _new_conn(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout if isinstance(self.timeout, int | float) else None)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise urllib3.exceptions.NewConnectionError(self, f"{self.socket_path}: {exc}") from exc
        return sock


class _UnixSocketPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _UnixSocketConnection


class _UnixSocketAdapter(HTTPAdapter):
    """requests over slurmrestd's unix socket (urllib3's connection, connected to the socket)."""

    def __init__(self, socket_path: str):
        super().__init__()
        self._pool = _UnixSocketPool("localhost", socket_path=socket_path)

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        return self._pool

    def get_connection(self, url, proxies=None):  # requests before 2.32
        return self._pool

    def close(self) -> None:
        self._pool.close()
        super().close()
