"""Flask under the event loop (service/api/wsgi_bridge.py), served by a real uvicorn: a small request
passes between the loop and its thread once; a large body or response goes message by message and
arrives whole; what WSGI asks of an error's response holds."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator

import pytest
import requests
import uvicorn
from flask import Flask, Response, request

from service.api import wsgi_bridge
from service.api.wsgi_bridge import BUFFERED_BYTES, WsgiBridge
from tests.conftest import free_port

pytestmark = pytest.mark.fast

BIG = BUFFERED_BYTES * 4 + 123  # several messages' worth, not a multiple of anything


def _app() -> Flask:
    app = Flask("bridge")

    @app.get("/small")
    def small():
        return {"hello": "world", "path": request.path, "query": request.args.get("q")}

    @app.post("/echo")
    def echo():
        data = request.get_data()
        return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    @app.get("/big")
    def big():
        def chunks():  # a download, made as it is sent
            for n in range(BIG // 1000):
                yield bytes([n % 251]) * 1000
            yield b"x" * (BIG % 1000)

        return Response(chunks(), mimetype="application/octet-stream")

    @app.get("/fails")
    def fails():
        raise RuntimeError("boom")

    @app.get("/written")
    def written():  # the old WSGI write() callable, which Flask apps rarely use
        def legacy(environ, start_response):
            write = start_response("201 Created", [("Content-Type", "text/plain"), ("X-Legacy", "yes")])
            write(b"written, ")
            return [b"then returned"]

        return legacy

    return app


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    flask_app = _app()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            WsgiBridge(flask_app, workers=4), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def hand_offs(monkeypatch) -> list[dict]:
    """The messages a request's thread handed to the loop one at a time (none for a small one)."""
    seen: list[dict] = []
    send = wsgi_bridge._Response._send

    def counted(self, message):
        seen.append(message)
        return send(self, message)

    monkeypatch.setattr(wsgi_bridge._Response, "_send", counted)
    return seen


def test_a_small_request_is_answered_whole_with_no_hand_off_from_its_thread(served, hand_offs):
    response = requests.get(f"{served}/small?q=1", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"hello": "world", "path": "/small", "query": "1"}
    assert response.headers["content-type"] == "application/json"
    assert hand_offs == []  # its start and its body went from the loop once the thread returned

    body = b'{"a": 1}' * 1000  # a small body, read ahead in the loop
    echoed = requests.post(f"{served}/echo", data=body, timeout=10).json()
    assert echoed == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    assert hand_offs == []


def test_a_large_body_and_a_large_response_go_message_by_message_and_arrive_whole(served, hand_offs):
    upload = bytes(range(256)) * (BIG // 256)  # more than is read ahead: the rest is read as the app asks
    echoed = requests.post(f"{served}/echo", data=upload, timeout=30).json()
    assert echoed == {"bytes": len(upload), "sha256": hashlib.sha256(upload).hexdigest()}

    response = requests.get(f"{served}/big", timeout=30)
    expected = b"".join(bytes([n % 251]) * 1000 for n in range(BIG // 1000)) + b"x" * (BIG % 1000)
    assert response.status_code == 200 and response.content == expected
    starts = [m for m in hand_offs if m["type"] == "http.response.start"]
    assert len(starts) == 1 and len(hand_offs) > 2  # held until it passed the limit, then sent as made
    bodies = [m for m in hand_offs if m["type"] == "http.response.body"]
    assert all(m["more_body"] for m in bodies)  # its end went from the loop, once the thread returned


def test_an_error_is_flasks_500_and_the_write_callable_still_works(served):
    failed = requests.get(f"{served}/fails", timeout=10)
    assert failed.status_code == 500
    legacy = requests.get(f"{served}/written", timeout=10)
    assert legacy.status_code == 201 and legacy.headers["x-legacy"] == "yes"
    assert legacy.text == "written, then returned"


def test_many_requests_at_once_each_get_their_own_answer(served):
    from concurrent.futures import ThreadPoolExecutor

    def ask(n):
        return requests.get(f"{served}/small?q={n}", timeout=20).json()["query"]

    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(ask, range(64))) == [str(n) for n in range(64)]
