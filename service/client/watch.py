"""`labtrain watch`: follow a job until it ends, on one live terminal line or as plain lines."""

from __future__ import annotations

import shutil
import sys
from typing import Any

import click

from service.client import display
from service.client.api import Api
from service.client.display import TERMINAL
from service.client.status_stream import StatusStream


class Screen:
    """Permanent lines scroll; the status line is redrawn in place on a terminal and, elsewhere
    (a pipe, a log file), printed only when it says something new."""

    def __init__(self, live: bool):
        self.live, self.drawn, self.last = live, False, None

    def line(self, text: str) -> None:
        self.clear()
        click.echo(text)

    def status(self, text: str, timing: str) -> None:
        if self.live:
            full = f"{text}  ({timing})" if timing else text
            width = max(20, shutil.get_terminal_size().columns - 1)
            sys.stdout.write("\r\033[K" + full[:width])
            sys.stdout.flush()
            self.drawn = True
        elif text != self.last:
            click.echo(text)
        self.last = text

    def clear(self) -> None:
        if self.drawn:
            sys.stdout.write("\r\033[K")
            sys.stdout.flush()
            self.drawn = False


def event_text(event: dict[str, Any]) -> str | None:
    data = event.get("data") or {}
    if event["type"] == "epoch":
        return display.epoch_line(data)
    if event["type"] == "log" and data.get("message"):
        return f"- {data['message']}"
    if event["type"] == "status" and data.get("status") == "running":
        worker = f" on {data['worker']}" if data.get("worker") else ""
        attempt = f" (attempt {data['attempt']})" if (data.get("attempt") or 1) > 1 else ""
        return f"started{worker}{attempt}"
    if event["type"] == "status" and data.get("status") == "queued" and data.get("reason"):
        if data["reason"] == "preempted":
            return "back in the queue: it yielded its slot to a debug job, and resumes from its checkpoint"
        return f"back in the queue: {data['reason']}"
    return None


def follow(api: Api, job_id: str, interval: float = 0.5, live: bool | None = None) -> dict[str, Any]:
    """Show the job's progress until it ends; returns the finished job."""
    screen = Screen(sys.stdout.isatty() if live is None else live)
    after = 0
    stream = StatusStream(api, job_id)  # its start and end heard at once, not at the next look
    try:
        while True:
            # The job first, then its events: once the job has ended, these events include its last ones.
            job = api.get(f"/jobs/{job_id}")
            for event in api.get(f"/jobs/{job_id}/events", after=after)["items"]:
                after = max(after, event["seq"])
                text = event_text(event)
                if text:
                    screen.line(text)
            if job["status"] in TERMINAL:
                screen.clear()
                return job
            # Off a terminal, epoch events already give a network job's progress line by line.
            if screen.live or "epochs" not in (job.get("progress") or {}):
                screen.status(display.progress_text(job), display.eta_text(job))
            stream.wait(interval)
    finally:
        stream.close()
        screen.clear()
