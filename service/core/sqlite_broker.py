"""The serverless broker (kombu's SQLAlchemy transport on a SQLite file), woken by a doorbell.

kombu's virtual transport sleeps `polling_interval` after each empty look at its queues, and
Celery's worker drives it that way (`synloop` calls `drain_events`, the transport cannot
tell it when a message comes). Here a publish rings the broker file's doorbell after its
commit (service/core/doorbell.py), and the consumer waits on its own doorbell instead of
sleeping, for at most `polling_interval` (the safety round: a ring can be lost). An ack rings
the consumer's own bell too: it frees a prefetch slot, so the next message may be taken now.
"""

from __future__ import annotations

from functools import cached_property
from queue import Empty
from time import monotonic

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as sqla
from sqlalchemy.engine import make_url

from service.core import doorbell

SCHEME = "sqla-doorbell"  # the broker URL's prefix that selects this transport (see broker_url)


def broker_url(url: str) -> str:
    """The URL that selects this transport for a `sqla+sqlite:///FILE` broker URL (others as given)."""
    prefix, _, rest = url.partition("+")
    if prefix not in ("sqla", "sqlalchemy") or doorbell.sqlite_folder(_database(rest) or "") is None:
        return url
    TRANSPORT_ALIASES.setdefault(SCHEME, f"{__name__}:Transport")
    return f"{SCHEME}+{rest}"


def _database(url: str) -> str | None:
    try:
        parsed = make_url(url)
    except Exception:  # not a URL SQLAlchemy reads: kombu will say so
        return None
    return parsed.database if parsed.get_backend_name() == "sqlite" else None


def configure(safety_s: float, fallback_s: float) -> None:
    # On the class: kombu hands this transport's options to create_engine.
    Transport.polling_interval, Transport.fallback_interval = safety_s, fallback_s


class Channel(sqla.Channel):
    def _put(self, queue, payload, **kwargs):
        super()._put(queue, payload, **kwargs)  # committed when it returns
        self.connection.ring()

    def basic_ack(self, delivery_tag, multiple=False):
        super().basic_ack(delivery_tag, multiple)
        self.connection.wake()

    def basic_reject(self, delivery_tag, requeue=False):
        super().basic_reject(delivery_tag, requeue)
        self.connection.wake()


class Transport(sqla.Transport):
    Channel = Channel
    polling_interval = 1.0  # the safety round, with a doorbell
    fallback_interval = 0.02  # the poll, where no doorbell can be made

    def __init__(self, client, **kwargs):
        super().__init__(client, **kwargs)
        self.bell: doorbell.Doorbell | None = None
        self._look_at = 0.0  # when the consumer looks at its queues next, unless rung

    @cached_property
    def folder(self):
        return doorbell.sqlite_folder(_database(self.client.hostname) or "")

    def ring(self) -> None:
        if self.folder is not None:
            doorbell.ring(self.folder)

    def wake(self) -> None:
        if self.bell is not None:
            self.bell.ring_self()

    def drain_events(self, connection, timeout=None):
        # kombu's own loop, with a wait on the doorbell where it sleeps. Celery's worker calls
        # this every 2 s: the time of the next look is kept across calls, so that the safety
        # round is polling_interval, not Celery's 2 s.
        if self.bell is None:
            self.bell = doorbell.Doorbell(self.folder, self.fallback_interval)  # before the first look
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            now = monotonic()
            if now >= self._look_at:
                try:
                    self.cycle.get(self._deliver, timeout=timeout)
                    return  # and the next call looks at once: more may be waiting
                except Empty:
                    now = monotonic()
                    self._look_at = now + self.polling_interval
            if deadline is not None and now >= deadline:
                raise TimeoutError()  # socket.timeout, as kombu raises it
            until = self._look_at if deadline is None else min(self._look_at, deadline)
            if self.bell.wait(until - now):
                self._look_at = 0.0  # rung (or, without a doorbell, polling): look now

    def close_connection(self, connection):
        try:
            super().close_connection(connection)
        finally:
            if self.bell is not None:
                self.bell.close()
                self.bell = None
