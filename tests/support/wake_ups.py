"""The wake-ups that code under test sends (service/core/wakeups.py), as a listener hears them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from service.core import wakeups
from service.core.db import Database


@contextmanager
def heard(db: Database, channels: tuple[str, ...]) -> Iterator[list[dict]]:
    """The payloads heard on `channels` from what runs meanwhile: the first within 10 s of the
    block's end, then all until half a second passes with none. None on SQLite, which does not
    notify (its doorbell carries no payload to a test): the list stays empty."""
    found: list[dict] = []
    listener = wakeups.Listener(db.url, channels) if wakeups.notifies(db.url) else None
    if listener:
        listener.wait(0.01)  # listening before the commits
    try:
        yield found
    finally:
        if listener:
            for _ in range(20):
                found += [w.payload for w in listener.wait(0.5)]
                if found:
                    break
            while wakes := listener.wait(0.5):
                found += [w.payload for w in wakes]
            listener.close()
