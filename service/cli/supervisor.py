"""Keeping `labtrain up`'s processes running.

A child that dies (a worker killed by the kernel for memory, say) is started again after a
back-off that doubles with each quick death, and the log says why; the others go on. Only
SIGINT or SIGTERM stops everything.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from dataclasses import dataclass, field

log = logging.getLogger("labtrain.up")

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 60.0
HEALTHY_AFTER_S = 60.0  # a child that ran this long starts the back-off over
STOP_GRACE_S = 20.0


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    delay: float = FIRST_DELAY_S
    restarts: int = field(default=0)

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv)
        self.started_at, self.restart_at = time.monotonic(), None


def exit_reason(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


class Supervisor:
    def __init__(self, children: list[Child]):
        self.children = children
        self.stopping = False

    def run(self, poll_s: float = 0.2) -> None:
        """Start every child and keep them running until SIGINT or SIGTERM; then stop them all."""
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGTERM, self._stop)
        for child in self.children:
            child.start()
        while not self.stopping:
            now = time.monotonic()
            for child in self.children:
                self._look_after(child, now)
            time.sleep(poll_s)
        self.stop_all()

    def _look_after(self, child: Child, now: float) -> None:
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.restarts += 1
                log.warning("starting %s again (restart %d)", child.name, child.restarts)
                child.start()
            return
        returncode = child.proc.poll() if child.proc else None
        if returncode is None:
            return
        if now - child.started_at >= HEALTHY_AFTER_S:
            child.delay = FIRST_DELAY_S
        log.warning(
            "%s (pid %d) %s; starting it again in %.0f s",
            child.name,
            child.proc.pid,
            exit_reason(returncode),
            child.delay,
        )
        child.restart_at = now + child.delay
        child.delay = min(child.delay * 2, MAX_DELAY_S)

    def _stop(self, _signum, _frame) -> None:
        self.stopping = True

    def stop_all(self) -> None:
        running = [c.proc for c in self.children if c.proc is not None and c.proc.poll() is None]
        for proc in running:
            proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
