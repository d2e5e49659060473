"""A job's events as server-sent events, as a plain WSGI server (here Flask's test client)
streams them: the same events as the JSON route, resumable with Last-Event-ID, polled with
short sessions, ended with the job or after a bounded time. `labtrain api` streams them
without polling (tests/service/api/test_streams_server.py)."""

from __future__ import annotations

import concurrent.futures
import json
import time
import types

import pytest
from sqlalchemy import update

from service.api import event_feeds
from service.core.orm import Job
from service.jobs import lifecycle
from tests.service.api.test_api_datasets_models import submit_and_run
from tests.support.api import IRIS_KNN

pytestmark = pytest.mark.fast  # the fast tier: no servers needed (tests/conftest.py)

SSE = {"Accept": "text/event-stream"}


def parse(text: str) -> list[dict]:
    """The events of a stream as {"id", "event", "data"}; comments and retry lines are skipped."""
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if "data" in fields:
            events.append({"id": fields.get("id"), "event": fields["event"], "data": json.loads(fields["data"])})
    return events


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(event_feeds, "POLL_S", 0.02)


def test_a_finished_jobs_stream_holds_its_events_and_ends(client, alice, run_queued, fast):
    job = submit_and_run(client, alice, run_queued, IRIS_KNN)
    response = client.get(f"/api/v1/jobs/{job['id']}/events", headers={**alice, **SSE})
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    text = response.get_data(as_text=True)  # returns: the stream ended by itself
    assert text.startswith("retry: ")
    items = client.get(f"/api/v1/jobs/{job['id']}/events", headers=alice).get_json()["items"]
    events = parse(text)
    assert [e["data"] for e in events] == items
    assert [(e["id"], e["event"]) for e in events] == [(str(i["seq"]), i["type"]) for i in items]
    assert events[-1]["data"]["data"]["status"] == "succeeded"


def test_after_and_last_event_id_pick_up_where_a_client_stopped(client, alice, run_queued, fast):
    job = submit_and_run(client, alice, run_queued, IRIS_KNN)
    url = f"/api/v1/jobs/{job['id']}/events"
    total = len(client.get(url, headers=alice).get_json()["items"])
    after_2 = parse(client.get(url + "?after=2", headers={**alice, **SSE}).get_data(as_text=True))
    assert [int(e["id"]) for e in after_2] == list(range(3, total + 1))
    resumed = client.get(url + "?after=2", headers={**alice, **SSE, "Last-Event-ID": str(total - 1)})
    assert [int(e["id"]) for e in parse(resumed.get_data(as_text=True))] == [total]
    # A JSON client is unaffected by the stream.
    assert client.get(url, headers={**alice, "Accept": "application/json"}).mimetype == "application/json"


def test_a_running_job_streams_new_events_as_they_come_and_ends_with_it(client, alice, app, db, monkeypatch):
    job_id = client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).get_json()["id"]
    pool = app.extensions["labtrain"].db.engine.pool
    sleeps = []

    def sleep(seconds):
        # Between polls the stream holds no connection (and so no transaction).
        sleeps.append(pool.checkedout())
        time.sleep(0.01)

    monkeypatch.setattr(event_feeds, "time", types.SimpleNamespace(monotonic=time.monotonic, sleep=sleep))
    response = client.get(f"/api/v1/jobs/{job_id}/events", headers={**alice, **SSE}, buffered=False)
    chunks = iter(response.response)
    assert next(chunks).decode().startswith("retry: ")
    first = parse(next(chunks).decode())
    assert [e["data"]["data"] for e in first] == [{"status": "queued", "by": "alice"}]

    waiting = concurrent.futures.ThreadPoolExecutor(1).submit(next, chunks)  # the stream polls, idle
    while len(sleeps) < 3:
        time.sleep(0.01)
    with db.session() as session:
        lifecycle.add_event(session, job_id, "epoch", {"epoch": 1, "epochs": 2, "loss": 0.5})
    assert [e["data"]["data"] for e in parse(waiting.result(10).decode())] == [{"epoch": 1, "epochs": 2, "loss": 0.5}]
    with db.session() as session:
        lifecycle.add_event(session, job_id, "epoch", {"epoch": 2, "epochs": 2, "loss": 0.25})
        lifecycle.add_event(session, job_id, "status", {"status": "succeeded"})
        session.execute(update(Job).where(Job.id == job_id).values(status=lifecycle.SUCCEEDED))
    rest = parse(b"".join(chunks).decode())  # ends once the job has finished and its events are sent
    assert [e["event"] for e in rest] == ["epoch", "status"]
    assert sleeps and set(sleeps) == {0}


def test_an_idle_stream_sends_heartbeats_and_ends_after_its_time_bound(client, alice, monkeypatch, fast):
    job_id = client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).get_json()["id"]
    monkeypatch.setattr(event_feeds, "HEARTBEAT_S", 0.05)
    monkeypatch.setattr(event_feeds, "MAX_POLL_STREAM_S", 0.5)
    started = time.monotonic()
    text = client.get(f"/api/v1/jobs/{job_id}/events", headers={**alice, **SSE}).get_data(as_text=True)
    assert 0.5 <= time.monotonic() - started < 5
    assert ": heartbeat" in text
    assert [e["event"] for e in parse(text)] == ["status"]  # the job is still queued: the client reconnects


def first_jobs(client, headers) -> list[dict]:
    """The first `job` events of GET /api/v1/events: the caller's queued and running jobs."""
    response = client.get("/api/v1/events", headers=headers, buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    chunks = iter(response.response)
    assert next(chunks).decode().startswith("retry: ")
    events = parse(next(chunks).decode())
    response.close()
    assert {e["event"] for e in events} == {"job"}
    return [e["data"] for e in events]


def test_the_jobs_stream_shows_a_user_their_own_jobs_and_an_admin_everyones(client, alice, bob, make_user, fast):
    mine = client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).get_json()["id"]
    theirs = client.post("/api/v1/jobs", json=IRIS_KNN, headers=bob).get_json()["id"]
    seen = first_jobs(client, alice)
    assert [j["id"] for j in seen] == [mine] and seen[0]["status"] == "queued" and seen[0]["last_event"] == 1
    assert [j["id"] for j in first_jobs(client, bob)] == [theirs]
    assert {j["id"] for j in first_jobs(client, make_user("root", admin=True))} == {mine, theirs}
    assert client.get("/api/v1/events").status_code == 401


def test_on_a_plain_wsgi_server_the_jobs_stream_sends_the_state_now_and_ends(client, alice):
    job_id = client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).get_json()["id"]
    text = client.get("/api/v1/events", headers=alice).get_data(as_text=True)  # returns: it ended
    assert text.startswith("retry: ")
    assert [(e["event"], e["data"]["id"], e["data"]["status"]) for e in parse(text)] == [("job", job_id, "queued")]


def test_another_users_job_stream_is_a_404(client, alice, bob):
    job_id = client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).get_json()["id"]
    response = client.get(f"/api/v1/jobs/{job_id}/events", headers={**bob, **SSE})
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


def test_the_dashboard_is_served_with_its_own_assets(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    html = page.get_data(as_text=True)
    assert "/dashboard/app.js" in html and "http://" not in html and "https://" not in html
    for asset in (
        "app.js",
        "api.js",
        "ui.js",
        "charts.js",
        "job.js",
        "submit.js",
        "model.js",
        "course.js",
        "competition.js",
        "style.css",
    ):
        response = client.get(f"/dashboard/{asset}")
        assert response.status_code == 200, asset
        assert b"https://" not in response.data and b"http://" not in response.data.replace(
            b"http://www.w3.org/2000/svg", b""
        ), asset
