"""One per API process: wakes the open event streams when their job (or their user's jobs)
gets an event, so an idle stream costs a small object, not a thread or a query.

On PostgreSQL one LISTEN connection per process hears every job event (service/core/wakeups.py).
On SQLite one task per process waits on its doorbell (rung after a commit that added an
event, service/core/doorbell.py), whose ring names the jobs that changed as a notification
would; where a ring names none (or may have been lost), and every `poll_s` at the latest, it
asks SQLite whether anything was committed (wakeups.SqliteChanges, which reads no table) and
only then asks for new events, for all the streams of the process at once (where no doorbell
can be made it asks every CHANGE_CHECK_S instead). Either way a stream also looks on its own
every heartbeat, so a lost wake-up delays it, never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterator

import anyio
import psycopg
from sqlalchemy import func, select

from service.core import doorbell, wakeups
from service.core.db import Database
from service.core.orm import Job, JobEvent

log = logging.getLogger(__name__)

RECONNECT_S = 1.0
CHANGE_CHECK_S = 0.02  # SQLite without a doorbell: how often the hub asks whether anything was committed
ALL = "all"  # every job's change (an admin's job list)


def job_key(job_id: str) -> str:
    return f"job:{job_id}"


def user_key(user_id: str) -> str:
    return f"user:{user_id}"


class StreamHub:
    def __init__(self, db: Database, url: str, poll_s: float):
        self.db, self.url, self.poll_s = db, url, poll_s
        self._waiting: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._watched = asyncio.Event()  # set when a stream opens (SQLite: the hub reads its doorbell again)
        self._unwatched_since = time.monotonic()  # when the last stream closed
        self._task: asyncio.Task | None = None
        self.connected = False  # whether wake-ups arrive now (PostgreSQL) or polling runs (SQLite)
        self.listens = wakeups.notifies(url)

    @property
    def open_streams(self) -> int:
        return len({id(event) for events in self._waiting.values() for event in events})

    @property
    def state(self) -> str:
        """listening (PostgreSQL notifications), polling (SQLite), or reconnecting: then streams
        still get their events, at their next heartbeat."""
        if not self.connected:
            return "reconnecting" if self.listens else "starting"
        return "listening" if self.listens else "polling"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen() if self.listens else self._poll(), name="stream-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    @contextlib.contextmanager
    def watching(self, *keys: str) -> Iterator[asyncio.Event]:
        """An event set when any of `keys` changes. Enter it before reading the database, so a
        change that lands between the read and the wait still wakes the stream."""
        event = asyncio.Event()
        for key in keys:
            self._waiting[key].add(event)
        self._watched.set()
        try:
            yield event
        finally:
            for key in keys:
                waiting = self._waiting.get(key)
                if waiting is not None:
                    waiting.discard(event)
                    if not waiting:
                        del self._waiting[key]
            if not self._waiting:
                self._unwatched_since = time.monotonic()

    def wake(self, *keys: str) -> None:
        for key in (*keys, ALL):
            for event in self._waiting.get(key, ()):
                event.set()

    def wake_all(self) -> None:
        for events in self._waiting.values():
            for event in events:
                event.set()

    async def _listen(self) -> None:
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    wakeups.conninfo(self.url), autocommit=True, connect_timeout=5
                )
                async with conn:
                    await conn.execute(f"LISTEN {wakeups.JOB_EVENTS}")
                    self.connected = True
                    self.wake_all()  # anything written while no one was listening
                    async for note in conn.notifies():
                        if self._waiting:
                            self._wake_named([wakeups.parse(note.channel, note.payload)])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("stream wake-ups lost; listening again in %.0f s", RECONNECT_S, exc_info=True)
            self.connected = False
            self.wake_all()
            await asyncio.sleep(RECONNECT_S)

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        commits = await anyio.to_thread.run_sync(wakeups.SqliteChanges, self.url, CHANGE_CHECK_S)
        last = await anyio.to_thread.run_sync(self._newest_event)  # after the bell is bound: no event missed
        rings = _Rings(loop, commits.bell)
        rings.start()
        self.connected = True
        looked = loop.time()
        try:
            while True:
                if not self._waiting and time.monotonic() - self._unwatched_since >= self.poll_s:
                    last = await self._until_watched(rings)
                    looked = loop.time()
                    continue
                rung = await rings.next(self.poll_s)
                if not self._waiting:
                    continue  # no stream to wake: what the rings say is no one's news
                wakes = None if rung is None else wakeups.ring_wakes(rung)  # what changed, where they named it
                now = loop.time()
                due = now - looked >= self.poll_s
                if wakes is not None and not due:
                    self._wake_named(wakes)  # the ring says which jobs changed: nothing to read
                    continue
                try:
                    found = await anyio.to_thread.run_sync(self._changed_if_committed, commits, last, due)
                except Exception:
                    log.warning("stream poll failed", exc_info=True)
                    continue
                if found is None:
                    continue
                looked = now
                last, changed = found
                for job_id, owner_id in changed:
                    self.wake(job_key(job_id), user_key(owner_id))
        finally:
            rings.stop()
            commits.close()

    async def _until_watched(self, rings: _Rings) -> int:
        """No stream open for a while (a burst of submits has none): the doorbell is not read, so
        its rings wake no one here (they pile up in its socket, or are refused) until a stream
        opens. Then the newest event, from which the hub reads on, and every stream looks once:
        one that opened before that read may have missed an event since its own."""
        rings.stop()
        self._watched.clear()
        await self._watched.wait()
        rings.start()  # the rings that piled up first: old news, but each is a commit it may not miss
        last = await anyio.to_thread.run_sync(self._newest_event)
        self.wake_all()
        return last

    def _wake_named(self, wakes: list[wakeups.Wake]) -> None:
        for wake in wakes:
            if wake.channel == wakeups.JOB_EVENTS:
                self.wake(job_key(str(wake.payload.get("job"))), user_key(str(wake.payload.get("owner"))))

    def _newest_event(self) -> int:
        with self.db.sessions() as session:
            return session.scalar(select(func.max(JobEvent.id))) or 0

    def _changed_if_committed(
        self, commits: wakeups.SqliteChanges, last: int, due: bool
    ) -> tuple[int, list[tuple[str, str]]] | None:
        """_changed_since, when another connection committed (or the poll is `due`); None when not
        asked. One trip to a thread for both."""
        if not commits.changed() and not due:
            return None
        return self._changed_since(last)

    def _changed_since(self, last: int) -> tuple[int, list[tuple[str, str]]]:
        # SQLite writes one transaction at a time, so event ids become visible in order. One row
        # per job that changed, however many events it got (after an idle hour, too).
        with self.db.sessions() as session:
            rows = session.execute(
                select(JobEvent.job_id, Job.owner_id, func.max(JobEvent.id))
                .join(Job, Job.id == JobEvent.job_id)
                .where(JobEvent.id > last)
                .group_by(JobEvent.job_id, Job.owner_id)
            ).all()
        if not rows:
            return last, []
        return max(newest for _, _, newest in rows), sorted((job_id, owner_id) for job_id, owner_id, _ in rows)


class _Rings:
    """The doorbell's rings as the event loop reads them: a reader takes each as it comes (so a
    readable socket never wakes the loop twice) and `next` hands over those gathered. Without a
    doorbell, `next` sleeps CHANGE_CHECK_S and says None: the hub asks SQLite instead."""

    def __init__(self, loop: asyncio.AbstractEventLoop, bell: doorbell.Doorbell | None):
        self.loop, self.bell = loop, bell  # SqliteChanges.bell: ready, or None
        self._gathered: list[bytes] = []
        self._rung = asyncio.Event()
        self._reading = False

    def start(self) -> None:
        if self.bell is not None and not self._reading:
            self.loop.add_reader(self.bell.fileno(), self._take)
            self._reading = True

    def stop(self) -> None:
        if self._reading:
            self.loop.remove_reader(self.bell.fileno())
            self._reading = False

    def _take(self) -> None:
        self._gathered += self.bell.take_waiting()
        self._rung.set()

    async def next(self, timeout: float) -> list[bytes] | None:
        """The rings that came by `timeout` seconds ([]: none)."""
        if self.bell is None:
            await asyncio.sleep(CHANGE_CHECK_S)
            return None
        if not self._gathered:
            timer = self.loop.call_later(timeout, self._rung.set)  # cheaper than wait_for's task
            try:
                await self._rung.wait()
            finally:
                timer.cancel()
        self._rung.clear()
        gathered, self._gathered = self._gathered, []
        return gathered
