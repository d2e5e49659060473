"""The API as `labtrain api` serves it: an ASGI app (uvicorn workers under gunicorn) that
runs the Flask app for every request on a small thread pool, and serves the event streams
itself, as coroutines that hold no thread while they wait.

A stream request goes to Flask first, like any other: authentication, ownership (another
user's job is the same 404 as a missing one), arguments and the request's metrics stay in
one place. Flask answers it with a hand-off (service/api/events.py) instead of a body; this app then
streams the feed it names, woken by the process's stream hub when the job's events are
written, with a heartbeat comment every HEARTBEAT_S (which also re-reads, in case a wake-up
was lost). A stream ends with its job, or when the client goes away; it has no time limit.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anyio
from flask import Flask

from service.api.event_feeds import HEARTBEAT, HEARTBEAT_S, RETRY_MS, STREAM_HEADERS, Feed
from service.api.events import HANDOFF_HEADER, SCOPE_KEY, feed_from
from service.api.monitoring import OPEN_STREAMS
from service.api.stream_hub import StreamHub
from service.api.wsgi_bridge import WsgiBridge
from service.core.db import Database

HUB_POLL_S = 1.0  # SQLite: the hub looks for new events at least this often (sooner on a commit)
READERS = 8  # database reads of streams at once, per process (below the connection pool's size)


class StreamingApp:
    def __init__(self, flask_app: Flask, threads: int):
        services = flask_app.extensions["labtrain"]
        self.db: Database = services.db
        self.hub = StreamHub(services.db, services.settings.database_url, HUB_POLL_S)
        self.wsgi = WsgiBridge(flask_app, workers=threads)
        self.readers: anyio.CapacityLimiter | None = None  # made in the event loop
        flask_app.extensions["labtrain.streams"] = self.hub  # /readyz and /metrics report it

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # a websocket: none is served
            await send({"type": "websocket.close", "code": 1000})
            return
        held: dict[str, Any] = {}

        async def send_or_hold(message: dict) -> None:
            if message["type"] == "http.response.start":
                for name, value in message.get("headers", []):
                    if name.lower() == HANDOFF_HEADER.lower().encode():
                        held["feed"] = json.loads(value)
            if "feed" not in held:
                await send(message)

        await self.wsgi({**scope, SCOPE_KEY: True}, receive, send_or_hold)
        if "feed" in held:
            await self._stream(feed_from(held["feed"]), receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.readers = anyio.CapacityLimiter(READERS)
                await self.hub.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.hub.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _stream(self, feed: Feed, receive: Any, send: Any) -> None:
        gauge = OPEN_STREAMS.labels(type(feed).__name__.removesuffix("Feed").lower())
        gauge.inc()
        try:
            await self._stream_body(feed, receive, send)
        finally:
            gauge.dec()

    async def _stream_body(self, feed: Feed, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
        headers += [(k.lower().encode(), v.encode()) for k, v in STREAM_HEADERS.items()]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        async with anyio.create_task_group() as group:

            async def until_gone() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(until_gone)
            try:
                await self._send_feed(feed, send)
            except OSError:  # the client went away mid-write
                pass
            group.cancel_scope.cancel()
        try:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass

    async def _send_feed(self, feed: Feed, send: Any) -> None:
        async def write(text: str) -> None:
            await send({"type": "http.response.body", "body": text.encode(), "more_body": True})

        await write(f"retry: {RETRY_MS}\n\n")
        while True:
            # Watch before reading: an event written between the read and the wait still wakes it.
            with self.hub.watching(*feed.keys) as woken:
                text, done = await anyio.to_thread.run_sync(feed.read, self.db, limiter=self.readers)
                if text:
                    await write(text)
                if done:
                    return
                if feed.more:
                    continue  # a full batch: read again before waiting
                try:
                    await asyncio.wait_for(woken.wait(), HEARTBEAT_S)
                except TimeoutError:
                    await write(HEARTBEAT)
