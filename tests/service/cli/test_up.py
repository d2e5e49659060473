"""`labtrain up` keeps its processes running: a child that dies (a worker killed by the
kernel, say) is started again and the log says why, while the API goes on answering; only
SIGTERM or SIGINT stops everything."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.conftest import free_port
from tests.support.processes import Client, ServiceProcess, service_env, wait_until_healthy


def children(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`, with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:  # it ended meanwhile
            continue
        parent = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:"))
        if parent == pid:
            found[int(entry.name)] = command
    return found


def worker_of(up: ServiceProcess, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = [pid for pid, command in children(up.proc.pid).items() if " worker " in f"{command} "]
        if workers:
            return workers[0]
        time.sleep(0.2)
    raise TimeoutError("labtrain up has no worker")


def kill_tree(pid: int) -> None:
    for child in children(pid):
        kill_tree(child)
    os.kill(pid, signal.SIGKILL)


def test_a_dead_worker_is_restarted_and_the_service_goes_on(tmp_path):
    port = free_port()
    up = ServiceProcess(["up", "--port", str(port)], service_env(tmp_path), tmp_path / "up.log")
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", [up])
        client = Client(f"http://127.0.0.1:{port}", (tmp_path / "token").read_text().strip())
        first = worker_of(up)
        kill_tree(first)  # as the kernel's OOM killer would

        assert client.get("/healthz").status_code == 200  # the API did not go down with it
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and worker_of(up) == first:
            time.sleep(0.2)
        assert worker_of(up) != first, up.output()
        log = up.output()
        assert f"worker (pid {first}) was killed by SIGKILL; starting it again" in log, log
        assert up.proc.poll() is None

        job = client.post("/api/v1/jobs", json={"dataset": "iris", "algorithm": "knn"}).json()
        assert client.wait_for(job["id"], timeout=120)["status"] == "succeeded"
    finally:
        if up.proc.poll() is None:
            running = children(up.proc.pid)
            os.kill(up.proc.pid, signal.SIGTERM)
            assert up.proc.wait(timeout=40) == 0
            time.sleep(0.5)
            assert not [
                pid
                for pid in running
                if Path(f"/proc/{pid}").exists() and "Z" not in (Path(f"/proc/{pid}/stat").read_text().split()[2])
            ]
        up.stop()
