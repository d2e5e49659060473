"""The API client's session against a real HTTP server that closes a kept-alive connection just as
the next request arrives on it (the server's keep-alive ran out in that instant): a GET is sent
once more on a new connection and gets its answer; a POST is never sent twice; an error answer
(a 503 with Retry-After) is the answer, not a reason to ask again."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from service.client.api import api_session

pytestmark = pytest.mark.fast


class DroppingServer:
    """Answers the first request of each connection and keeps the connection open; the second
    request on it gets the connection reset, unanswered. Counts the requests it read."""

    def __init__(self, status: int = 200, headers: dict[str, str] | None = None):
        self.requests: list[str] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keeps the connection open between requests
            answered = False  # per connection: a handler serves one connection's requests

            def _serve(self) -> None:
                seen.append(self.command)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.answered:  # closed with a zero linger: the client sees the connection reset
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                self.answered = True
                body = b'{"ok": true}'
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _serve

            def log_message(self, *_args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@contextmanager
def dropping_server(**kwargs) -> Iterator[DroppingServer]:
    server = DroppingServer(**kwargs)
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


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
    with dropping_server(status=503, headers={"Retry-After": "1"}) as server:
        answer = api_session({}).get(server.url + "/busy", timeout=5)
        assert answer.status_code == 503
        assert server.requests == ["GET"]
