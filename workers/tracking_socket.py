"""A job's tracking endpoint on a Unix socket of its own, for the attempt's lifetime.

The worker serves a WSGI app (the job's MLflow endpoint: service/tracking/job_endpoint.py)
on `<folder>/tracking.sock`, in a folder only the sandbox's user and root can reach; the
code trainer binds the folder into the sandbox (SOCKET_FOLDER), where labtrain_job's forwarder
pipes 127.0.0.1:<port> to it. Everything that arrives is the job's: connections are bounded
in number and in idle time, and closing the endpoint cuts them, so nothing of this attempt is
served once it ended.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

SOCKET_FOLDER = "/run/labtrain"  # where the sandbox sees the folder
SOCKET_NAME = "tracking.sock"
MAX_CONNECTIONS = 16  # at once: each holds a thread of the worker
IDLE_TIMEOUT_S = 60.0  # a connection that sends nothing this long is closed
CLOSE_WAIT_S = 10.0  # how long closing waits for requests under way to finish

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Any]

log = logging.getLogger("labtrain.worker")


class _Handler(WSGIRequestHandler):
    timeout = IDLE_TIMEOUT_S

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass  # a job's requests are its own business, not the worker's log

    def log_error(self, *args: Any) -> None:
        pass

    def address_string(self) -> str:
        return "job"


class _BoundedServer(ThreadedWSGIServer):
    """At most MAX_CONNECTIONS served at once (past them a connection is closed at once, and
    the client retries); each connection known, so closing the server can cut it."""

    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.connections: dict[socket.socket, threading.Thread | None] = {}
        self.guard = threading.Lock()
        self.closing = False

    def process_request(self, request, client_address):
        with self.guard:
            refused = self.closing or len(self.connections) >= MAX_CONNECTIONS
            if not refused:
                self.connections[request] = None
        if refused:
            self.shutdown_request(request)
            return
        thread = threading.Thread(target=self.process_request_thread, args=(request, client_address), daemon=True)
        with self.guard:
            self.connections[request] = thread
        thread.start()

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.guard:
                self.connections.pop(request, None)

    def cut(self) -> list[threading.Thread]:
        """End every connection (a request under way finishes, its answer goes nowhere)."""
        with self.guard:
            self.closing = True
            found = list(self.connections.items())
        for request, _thread in found:
            with contextlib.suppress(OSError):
                request.shutdown(socket.SHUT_RDWR)
        return [thread for _, thread in found if thread is not None]


class TrackingSocket:
    """The app served on `folder`/tracking.sock by a thread, until close()."""

    def __init__(self, app: WSGIApp, folder: Path | None = None, owner_uid: int | None = None):
        # By default a new folder in the worker's temporary folder: outside the artifact store, whose
        # path the sandbox's mountinfo would otherwise show the job.
        folder = folder or Path(tempfile.mkdtemp(prefix="labtrain-tracking-"))
        self.folder = folder
        self.path = folder / SOCKET_NAME
        self._server: _BoundedServer | None = None
        self._thread: threading.Thread | None = None
        _fresh_folder(folder, owner_uid)
        try:
            listener = _bind(folder, owner_uid)
            try:
                self._server = _BoundedServer(f"unix://{self.path}", 0, app, _Handler, fd=listener.fileno())
            finally:
                listener.close()  # the server holds its own copy
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="tracking-socket", daemon=True
            )
            self._thread.start()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop serving, cut the connections, and remove the socket and its folder."""
        server, self._server = self._server, None
        if server is not None:
            threads = server.cut()
            if self._thread is not None:
                server.shutdown()
                self._thread.join()
            server.server_close()
            for thread in threads:
                thread.join(CLOSE_WAIT_S)
                if thread.is_alive():
                    log.warning("a request of the job's tracking endpoint did not finish within %ss", CLOSE_WAIT_S)
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> TrackingSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fresh_folder(folder: Path, owner_uid: int | None) -> None:
    """The folder, empty (a crashed attempt's is replaced), 0700 and the sandbox user's."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700, parents=True)
    os.chmod(folder, 0o700)
    if owner_uid is not None:
        os.chown(folder, owner_uid, owner_uid)


def _bind(folder: Path, owner_uid: int | None) -> socket.socket:
    """A listening Unix socket in `folder`, named through the folder's descriptor: a socket's
    path has a length limit that a job folder's path may pass."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        listener.bind(f"/proc/self/fd/{folder_fd}/{SOCKET_NAME}")
        _own(folder_fd, owner_uid)
        listener.listen(64)
    except BaseException:
        listener.close()
        raise
    finally:
        os.close(folder_fd)
    return listener


def _own(folder_fd: int, owner_uid: int | None) -> None:
    """Only the sandbox's user (and root) may connect: connecting needs write permission."""
    os.chmod(SOCKET_NAME, 0o600, dir_fd=folder_fd)
    if owner_uid is not None:
        os.chown(SOCKET_NAME, owner_uid, owner_uid, dir_fd=folder_fd, follow_symlinks=False)
