"""A redis-server of a test's own on a free port, which the test may stop and start again on the
same port (empty: no snapshot, no append-only file), as a Redis restart loses what it held."""

from __future__ import annotations

import shutil
import subprocess
import time

import redis

from tests.conftest import free_port


class RedisServer:
    def __init__(self):
        assert shutil.which("redis-server"), "redis-server is needed for the Redis restart tests"
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen([*command, "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()
