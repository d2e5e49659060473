"""Debian's slurmrestd (22.05) on the tests' SLURM cluster (tests/support/slurm_cluster.py), the
two ways a site runs it:

- JWT over TCP (rest_auth/jwt): started as `nobody` (-u/-g: slurmrestd refuses to serve as root
  or SlurmUser), with SLURM_JWT=daemon; the dispatcher sends root's token from `scontrol token`,
  which slurmctld checks with the cluster's JWT key (AuthAltTypes=auth/jwt);
- its unix socket (rest_auth/local): slurmrestd serves only the user it runs as, which is the
  tests' user, root, so it runs as root with SLURMRESTD_SECURITY=disable_user_check; it reaches
  slurmctld as the commands do (auth/none here, munge on a real cluster).

`nobody` reads slurm.conf only after slurmrestd drops to it, and the cluster's folder is private:
slurmrestd reads a copy in a folder of its own. Only the v0.0.38 plugin is loaded (the others
would want slurmdbd).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from service.slurm.commands import SlurmError
from service.slurm.rest import SlurmRest
from service.slurm.rest_config import load
from tests.conftest import free_port
from tests.support.slurm_cluster import SlurmCluster

TOKEN_LIFESPAN_S = 6 * 3600


class SlurmRestd:
    def __init__(self, cluster: SlurmCluster, folder: Path):
        self.cluster, self.folder = cluster, folder
        self.port = free_port()
        self.socket = folder / "slurmrestd.socket"
        self.token_file = folder / "root.jwt"
        self._procs: list[subprocess.Popen] = []
        self._conf_dir = Path(tempfile.mkdtemp(prefix="labtrain-slurmrestd-"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def jwt_config(self) -> dict[str, str]:
        """LABTRAIN_SLURMRESTD's entry for JWT over TCP."""
        return {"url": self.url, "user": "root", "token_file": str(self.token_file)}

    def socket_config(self) -> dict[str, str]:
        """LABTRAIN_SLURMRESTD's entry for the unix socket (rest_auth/local)."""
        return {"url": f"unix:{self.socket}"}

    def start(self, timeout: float = 30) -> None:
        if shutil.which("slurmrestd") is None:
            raise RuntimeError("slurmrestd is not installed: `make debian-tools` installs it (as root)")
        self._conf_dir.chmod(0o755)
        conf = self._conf_dir / "slurm.conf"
        shutil.copy(self.cluster.conf, conf)
        conf.chmod(0o644)
        token = self.cluster.run("scontrol", "token", "username=root", f"lifespan={TOKEN_LIFESPAN_S}").stdout
        self.token_file.write_text(token.strip())  # SLURM_JWT=...: the client takes it as scontrol prints it
        self.token_file.chmod(0o600)
        nobody = pwd.getpwnam("nobody")
        common = ["slurmrestd", "-f", str(conf), "-s", "openapi/v0.0.38"]
        self._start(
            [
                *common,
                "-a",
                "rest_auth/jwt",
                "-u",
                str(nobody.pw_uid),
                "-g",
                str(nobody.pw_gid),
                f"127.0.0.1:{self.port}",
            ],
            {"SLURM_JWT": "daemon"},
            "jwt",
        )
        self._start(
            [*common, "-a", "rest_auth/local", f"unix:{self.socket}"],
            {"SLURMRESTD_SECURITY": "disable_user_check"},
            "local",
        )
        for config in (self.jwt_config(), self.socket_config()):
            self._wait(config, timeout)

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # its clean shutdown
        for proc in self._procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self._conf_dir, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.folder.glob("*.log"))

    def _start(self, argv: list[str], env: dict[str, str], name: str) -> None:
        with open(self.folder / f"slurmrestd-{name}.log", "wb") as log:
            self._procs.append(
                subprocess.Popen(argv, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, cwd=self.folder)
            )

    def _wait(self, config: dict[str, str], timeout: float) -> None:
        client = SlurmRest(load(json.dumps(config), os.environ), timeout_s=5)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.partitions()
                return
            except SlurmError as exc:
                exited = [p.args for p in self._procs if p.poll() is not None]
                if exited or time.monotonic() > deadline:
                    raise RuntimeError(f"slurmrestd did not answer ({config['url']}): {exc}\n{self.logs()}") from None
            time.sleep(0.2)
