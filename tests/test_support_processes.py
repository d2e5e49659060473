"""The deployments the tests start never outlive the test process: a test session killed
mid-way (SIGKILL leaves no fixture a chance to stop them) would otherwise leave a worker
that takes the next session's messages from the Redis database numbers it reuses."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.conftest import free_port

STARTER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tests.support.processes import ServiceProcess, service_env, wait_until_healthy
    home, port = Path(sys.argv[1]), sys.argv[2]
    up = ServiceProcess(["up", "--port", port], service_env(home), home / "up.log")
    wait_until_healthy(f"http://127.0.0.1:{port}", [up])
    print(up.proc.pid, flush=True)
    time.sleep(600)
    """
)


def group_members(group: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # it ended meanwhile
                continue
            if int(fields[2]) == group and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def test_a_deployment_stops_when_the_test_process_that_started_it_is_killed(tmp_path):
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, str(tmp_path), str(free_port())],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    group = None
    try:
        group = int(starter.stdout.readline())  # `up` leads a process group of its own
        assert len(group_members(group)) >= 3  # up, its API, dispatcher and worker
        starter.kill()
        starter.wait()
        deadline = time.monotonic() + 60
        while group_members(group) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert group_members(group) == [], (tmp_path / "up.log").read_text()[-2000:]
    finally:
        starter.kill()
        if group is not None:
            with contextlib.suppress(ProcessLookupError):  # what a failed test left
                os.killpg(group, signal.SIGKILL)
