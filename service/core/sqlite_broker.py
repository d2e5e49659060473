"""The serverless broker (kombu's SQLAlchemy transport on a SQLite file), woken by a doorbell,
with a put and a take of one statement each.

kombu's virtual transport sleeps `polling_interval` after each empty look at its queues, and
Celery's worker drives it that way (`synloop` calls `drain_events`, the transport cannot
tell it when a message comes). Here a publish rings the broker file's doorbell after its
commit (service/core/doorbell.py), and the consumer waits on its own doorbell instead of
sleeping, for at most `polling_interval` (the safety round: a ring can be lost). An ack rings
the consumer's own bell too: it frees a prefetch slot, so the next message may be taken now.
"""

from __future__ import annotations

from functools import cached_property
from json import dumps, loads
from queue import Empty
from time import monotonic

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as sqla
from kombu.utils.encoding import bytes_to_str
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from service.core import doorbell
from service.core.db import sqlite_pragmas

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


# A message is taken by deleting it, in one statement (SQLite runs it under its write lock, so
# two consumers never take the same one). kombu's own take is an ORM read and update in a
# transaction of their own, and leaves each message in the table, marked taken, for ever.
TAKE = text(
    "DELETE FROM kombu_message WHERE id = (SELECT id FROM kombu_message WHERE queue_id = :queue AND visible "
    "ORDER BY id LIMIT 1) RETURNING payload"
)
PUT = text("INSERT INTO kombu_message (queue_id, visible, payload, version) VALUES (:queue, 1, :payload, 1)")
FORGET_TAKEN = text("DELETE FROM kombu_message WHERE queue_id = :queue AND NOT visible")


class Channel(sqla.Channel):
    """kombu's channel on the same tables, with a put and a take of one statement each; the queue's
    row id is read once."""

    def __init__(self, *args, **kwargs):
        self._queue_ids: dict[str, int] = {}
        super().__init__(*args, **kwargs)

    def _engine_from_config(self):
        # kombu's engine, with the database's settings: kombu's own (a journal synced at every
        # commit) made each put and take wait for the disk.
        engine = super()._engine_from_config()
        event.listen(engine, "connect", sqlite_pragmas)
        return engine

    def _queue_id(self, queue: str) -> int:
        if queue not in self._queue_ids:
            self._queue_ids[queue] = self._get_or_create(queue).id
        return self._queue_ids[queue]

    def _new_queue(self, queue, **kwargs):
        # Declared as a worker or `labtrain up` starts: messages an earlier version took and kept go.
        self.session.execute(FORGET_TAKEN, {"queue": self._queue_id(queue)})
        self.session.commit()

    def _put(self, queue, payload, **kwargs):
        try:
            self.session.execute(PUT, {"queue": self._queue_id(queue), "payload": dumps(payload)})
            self.session.commit()
        except OperationalError:  # the publish fails (and may be retried): nothing was stored
            self.session.rollback()
            raise
        self.connection.ring()

    def _get(self, queue):
        try:
            row = self.session.execute(TAKE, {"queue": self._queue_id(queue)}).first()
            self.session.commit()
        except OperationalError:
            self.session.rollback()
            raise
        if row is None:
            raise Empty()
        return loads(bytes_to_str(row.payload))

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
