"""A job's status changes heard on its event stream (server-sent events), so that a client
waiting for a job hears at once that it started or ended, instead of at its next look.

The stream is read on a thread of its own; `wait(timeout)` returns as soon as a `status` event
came (the job started, ended, went back to the queue) or after `timeout`, so a caller's loop
keeps its rhythm for progress and log lines and ends when the job does. A dropped stream is
opened again from the last event it gave; a server that does not stream (a proxy that buffers,
an old server) leaves `wait` a plain sleep, as the clients were before.
"""

from __future__ import annotations

import threading
from typing import Any

import requests

RECONNECT_S = 1.0  # after a stream ended or failed, before it is opened again


class StatusStream:
    def __init__(self, api: Any, job_id: str):
        self._changed = threading.Event()
        self._closed = threading.Event()
        self._response: requests.Response | None = None
        self._thread: threading.Thread | None = None
        opener = getattr(api, "stream", None)  # an Api; a stand-in without one just sleeps
        if opener is not None:
            self._thread = threading.Thread(target=self._read, args=(opener, job_id), daemon=True, name="job-stream")
            self._thread.start()

    def wait(self, timeout: float) -> bool:
        """Until a status event came since the last call, or `timeout`; True when one came."""
        changed = self._changed.wait(timeout) if timeout > 0 else self._changed.is_set()
        self._changed.clear()
        return changed

    def close(self) -> None:
        self._closed.set()
        response = self._response
        if response is not None:
            response.close()  # ends the thread's read

    def __enter__(self) -> StatusStream:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _read(self, opener: Any, job_id: str) -> None:
        after = 0
        while not self._closed.is_set():
            try:
                with opener(f"/jobs/{job_id}/events", after=after) as response:
                    if response.status_code != 200 or "text/event-stream" not in response.headers.get(
                        "Content-Type", ""
                    ):
                        return  # not streamed here: wait() sleeps
                    self._response = response
                    after = self._events(response, after)
            except Exception:  # dropped, or closed by close(): opened again below, from `after`
                pass
            finally:
                self._response = None
            self._changed.set()  # a stream that ended: the job may have; the caller looks
            self._closed.wait(RECONNECT_S)

    def _events(self, response: requests.Response, after: int) -> int:
        """Reads the stream until it ends; returns the last event id it gave."""
        kind = None
        # chunk_size=None: each chunk as it arrives (a fixed size would wait for that many bytes).
        for line in response.iter_lines(chunk_size=None, decode_unicode=True):
            if self._closed.is_set():
                break
            if line.startswith("id: "):
                after = int(line.removeprefix("id: "))
            elif line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: ") and kind == "status":
                self._changed.set()
            elif not line:
                kind = None
        return after
