"""The API client's session against a real HTTP server that closes a kept-alive connection just as
the next request arrives on it (the server's keep-alive ran out in that instant): a GET is sent
once more on a new connection and gets its answer; a POST is never sent twice; an error answer
(a 503 with Retry-After) is the answer, not a reason to ask again."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from service.client.api import api_session

pytestmark = pytest.mark.fast


class DroppingServer:
    """Answers the first request of each connection and keeps the connection open; the second
    request on it gets the connection reset, unanswered. Counts the requests it read."""

    def __init__(self, status: int = 200, headers: str = ""):
        self.status, self.headers = status, headers
        self.requests: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            for answered in (True, False):
                request = _read_request(conn)
                if request is None:
                    return
                self.requests.append(request.split(" ", 2)[0])
                if not answered:  # a reset, as a close with unread data gives
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    return
                body = b'{"ok": true}'
                conn.sendall(
                    f"HTTP/1.1 {self.status} X\r\nContent-Type: application/json\r\n{self.headers}"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )


def _read_request(conn: socket.socket) -> str | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head.decode()


@contextmanager
def dropping_server(**kwargs) -> Iterator[DroppingServer]:
    server = DroppingServer(**kwargs)
    try:
        yield server
    finally:
        server.listener.close()


def test_a_get_on_a_connection_dropped_under_it_is_sent_once_more():
    with dropping_server() as server:
        session = api_session({"Authorization": "Bearer t"})
        assert session.get(server.url + "/a", timeout=5).json() == {"ok": True}
        answer = session.get(server.url + "/b", timeout=5)  # the kept-alive connection is reset
        assert answer.status_code == 200 and answer.json() == {"ok": True}
        assert server.requests == ["GET", "GET", "GET"]


def test_a_post_on_a_connection_dropped_under_it_is_not_sent_twice():
    with dropping_server() as server:
        session = api_session({})
        session.post(server.url + "/jobs", json={}, timeout=5)
        with pytest.raises(requests.ConnectionError):
            session.post(server.url + "/jobs", json={}, timeout=5)
        assert server.requests == ["POST", "POST"]


def test_an_error_answer_with_retry_after_is_not_asked_again():
    with dropping_server(status=503, headers="Retry-After: 1\r\n") as server:
        answer = api_session({}).get(server.url + "/busy", timeout=5)
        assert answer.status_code == 503
        assert server.requests == ["GET"]
