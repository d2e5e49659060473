"""What trainers are driven with in tests: a reporter that keeps what they report (events,
progress, printed lines), and Allotments (workers/trainers/base.py) for a job stopped, or
asked to yield, after so many batches or epochs."""

from __future__ import annotations

from typing import Any

from workers.trainers.base import Allotment, Cancelled


class ListReporter:
    """Keeps every event, progress call and printed line; raises Cancelled (as the worker's does
    once a job is cancelled) after `cancel_after` reports."""

    def __init__(self, cancel_after: int | None = None):
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.progress_calls: list[dict[str, Any]] = []
        self.lines: list[tuple[str, str]] = []
        self.cancel_after = cancel_after

    def event(self, type_, data):
        self.events.append((type_, data))
        self._maybe_cancel()

    def progress(self, **fields):
        self.progress_calls.append(fields)
        self._maybe_cancel()

    def output(self, stream, line):
        self.lines.append((stream, line))

    def epochs(self) -> list[int]:
        return [data["epoch"] for kind, data in self.events if kind == "epoch"]

    def printed(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def _maybe_cancel(self):
        if self.cancel_after is not None and len(self.events) + len(self.progress_calls) > self.cancel_after:
            raise Cancelled()


def stopping_after_epochs(reporter: ListReporter, epochs: int, **allotted: Any) -> Allotment:
    """An allotment whose stop check says stop once `epochs` epochs were reported (as a lost
    worker would stop the job)."""
    return Allotment(stop=lambda: len(reporter.epochs()) >= epochs, **allotted)


def stopping_after_asks(asks: int, **allotted: Any) -> Allotment:
    """An allotment whose stop check says stop after it was asked `asks` times; how often it was
    asked is its `asked`."""
    allotment = Allotment(**allotted)
    allotment.asked = 0  # type: ignore[attr-defined]

    def stop() -> bool:
        allotment.asked += 1  # type: ignore[attr-defined]
        return allotment.asked > asks  # type: ignore[attr-defined]

    allotment.stop = stop
    return allotment


def yielding_after_epochs(reporter: ListReporter, epochs: int, **allotted: Any) -> Allotment:
    """An allotment whose yield check says yield once `epochs` epochs were reported (as the
    dispatcher asks a batch job to yield to a debug job)."""
    return Allotment(preempt=lambda: len(reporter.epochs()) >= epochs, **allotted)
