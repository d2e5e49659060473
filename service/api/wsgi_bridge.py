"""The Flask app (WSGI) under the event loop, on a thread pool, a small request in one hand-off.

a2wsgi's WSGIMiddleware hands each message between the loop and the request's thread: the
request body's, the response's start, each body chunk and its end, every one a wake-up of the
loop and a wait of the thread; a job's GET made four such trips, a sixth of its CPU
(BENCHMARKS.md, issue 24). Here a request body of up to BUFFERED_BYTES is read in the loop
before the app runs, and a response is held in its thread until it passes BUFFERED_BYTES: one
that ends within that (JSON, a page) is sent by the loop once the thread returns. A larger one
(an upload, a model's or an artifact's download) goes on as a2wsgi's does, message by message,
the thread waiting on each: memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from a2wsgi.wsgi import Body, build_environ

BUFFERED_BYTES = 256 * 1024


class WsgiBridge:
    """An ASGI app of `app`, run on `workers` threads (a2wsgi's WSGIMiddleware, for HTTP)."""

    def __init__(self, app: Callable, workers: int):
        self.app = app
        self.executor = ThreadPoolExecutor(thread_name_prefix="WSGI", max_workers=workers)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        loop = asyncio.get_running_loop()
        body = _ReadAheadBody(loop, receive)
        await body.read_ahead(BUFFERED_BYTES)
        response = _Response(loop, send)
        run = functools.partial(contextvars.copy_context().run, response.run, self.app, build_environ(scope, body))
        await loop.run_in_executor(self.executor, run)
        for message in response.held:  # what the thread kept: all of a small response, a large one's end
            await send(message)


class _ReadAheadBody(Body):
    """a2wsgi's request body, its first bytes read in the loop (no hand-off for a small body)."""

    async def read_ahead(self, limit: int) -> None:
        while self._has_more and len(self.buffer) < limit:
            message = await self.receive()
            self._has_more = message.get("more_body", False)
            self.buffer.extend(message.get("body", b""))


class _Response:
    """One response's messages, made in the request's thread: held while small, then sent."""

    def __init__(self, loop: asyncio.AbstractEventLoop, send: Callable):
        self.loop, self.send = loop, send
        self.held: list[dict[str, Any]] = []
        self.held_bytes = 0
        self.sent = False  # passed BUFFERED_BYTES: each message goes at once

    def run(self, app: Callable, environ: dict[str, Any]) -> None:
        chunks: Iterable[bytes] = app(environ, self.start_response)
        try:
            for chunk in chunks:
                self.write(chunk)
        finally:
            getattr(chunks, "close", lambda: None)()
        if self.sent:
            self.held.append({"type": "http.response.body", "body": b"", "more_body": False})
        else:  # a small response: its start, then its body in one message
            start, *parts = self.held
            body = b"".join(part["body"] for part in parts)
            self.held = [start, {"type": "http.response.body", "body": body, "more_body": False}]

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
        if exc_info is not None and self.sent:  # too late to change the response: as WSGI asks
            raise exc_info[1].with_traceback(exc_info[2])
        start = {
            "type": "http.response.start",
            "status": int(status.split(" ", 1)[0]),
            "headers": [
                (name.strip().lower().encode("latin1"), value.strip().encode("latin1")) for name, value in headers
            ],
        }
        if self.held and self.held[0]["type"] == "http.response.start":
            self.held[0] = start  # an error's response replaces the one begun
        else:
            self.held.insert(0, start)
        return self.write

    def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        message = {"type": "http.response.body", "body": chunk, "more_body": True}
        if self.sent:
            self._send(message)
            return
        self.held.append(message)
        self.held_bytes += len(chunk)
        if self.held_bytes > BUFFERED_BYTES:
            for held in self.held:
                self._send(held)
            self.held, self.sent = [], True

    def _send(self, message: dict[str, Any]) -> None:
        asyncio.run_coroutine_threadsafe(self.send(message), self.loop).result()
