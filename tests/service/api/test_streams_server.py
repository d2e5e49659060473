"""Event streams as `labtrain api` serves them (uvicorn workers, PostgreSQL notifications),
and the dispatcher woken by what changes its decision, on real processes.

Timings are logged, not asserted, except where a bound is what proves the point (an event
that arrives long before the timer it would otherwise have waited for)."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text, update

from service.core.db import Database
from service.core.orm import Job
from service.jobs import lifecycle
from service.lab import worker_registry
from tests.conftest import free_port
from tests.support.api import IRIS_KNN
from tests.support.processes import ServiceProcess, deployment_env, run_cli, wait_until_healthy

log = logging.getLogger(__name__)


class Stream:
    """An open SSE response, read event by event on a thread (so a read can time out)."""

    def __init__(self, url: str, token: str, last_id: int | None = None):
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = str(last_id)
        self.response = requests.get(url, headers=headers, stream=True, timeout=60)
        self.events: list[tuple[float, dict]] = []
        self.ended = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            for line in self.response.iter_lines(decode_unicode=True):
                if line:
                    name, _, value = line.partition(": ")
                    fields[name] = value
                elif "data" in fields:
                    self.events.append((time.monotonic(), {**fields, "data": json.loads(fields["data"])}))
                    fields = {}
                else:
                    fields = {}
        except (requests.RequestException, OSError, AttributeError):  # AttributeError: closed while reading
            pass
        self.ended.set()

    def wait_for(self, count: int, timeout: float = 20) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline and not self.ended.is_set():
            time.sleep(0.005)
        return [event for _, event in self.events]

    def close(self) -> None:
        self.response.close()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, make_pg_database, make_redis_url):
    home = tmp_path_factory.mktemp("streams")
    env = deployment_env(home, LABTRAIN_DATABASE_URL=make_pg_database(), LABTRAIN_BROKER_URL=make_redis_url())
    tokens = {name: run_cli(["users", "create", name], env).stdout.strip() for name in ("alice", "bob")}
    return home, env, tokens


@pytest.fixture
def api(deployment) -> Iterator[str]:
    home, env, _ = deployment
    process, url = start_api(home, env, free_port())
    yield url
    process.stop()


def start_api(home, env, port: int) -> tuple[ServiceProcess, str]:
    process = ServiceProcess(["api", "--port", str(port), "--workers", "1"], env, home / f"api-{port}.log")
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(url, [process])
    return process, url


def queued_job(url: str, token: str) -> str:
    created = requests.post(f"{url}/api/v1/jobs", json=IRIS_KNN, headers={"Authorization": f"Bearer {token}"})
    assert created.status_code == 201, created.text
    return created.json()["id"]


def write_event(env: dict, job_id: str, data: dict) -> float:
    db = Database(env["LABTRAIN_DATABASE_URL"])
    with db.session() as session:
        lifecycle.add_event(session, job_id, "log", data)
    written = time.monotonic()
    db.dispose()
    return written


def test_a_stream_gets_each_event_as_it_is_written_not_at_a_poll(deployment, api):
    _, env, tokens = deployment
    job_id = queued_job(api, tokens["alice"])  # no dispatcher runs: it stays queued, its stream open
    stream = Stream(f"{api}/api/v1/jobs/{job_id}/events", tokens["alice"])
    assert [e["data"]["data"]["status"] for e in stream.wait_for(1)] == ["queued"]
    delays = []
    for n in range(1, 6):
        written = write_event(env, job_id, {"message": f"line {n}"})
        stream.wait_for(1 + n)
        delays.append(stream.events[-1][0] - written)
    stream.close()
    got = [(e["id"], e["event"], e["data"]["data"]) for _, e in stream.events]
    assert got == [("1", "status", {"status": "queued", "by": "alice"})] + [
        (str(n + 1), "log", {"message": f"line {n}"}) for n in range(1, 6)
    ]
    log.warning(
        "event written to received: %s ms (a polling stream waited up to 400 ms)", [round(d * 1000) for d in delays]
    )


def test_the_servers_streams_keep_their_isolation(deployment, api):
    _, env, tokens = deployment
    job_id = queued_job(api, tokens["alice"])
    as_bob = requests.get(
        f"{api}/api/v1/jobs/{job_id}/events",
        headers={"Authorization": f"Bearer {tokens['bob']}", "Accept": "text/event-stream"},
    )
    assert as_bob.status_code == 404 and as_bob.json()["error"]["code"] == "not_found"
    assert requests.get(f"{api}/api/v1/events").status_code == 401

    bobs = Stream(f"{api}/api/v1/events", tokens["bob"])
    alices = Stream(f"{api}/api/v1/events", tokens["alice"])
    assert job_id in {e["data"]["id"] for e in alices.wait_for(1)}
    newer = queued_job(api, tokens["alice"])
    assert newer in {e["data"]["id"] for e in alices.wait_for(len(alices.events) + 1)}
    time.sleep(0.5)
    assert bobs.events == []  # nothing of alice's
    ready = requests.get(f"{api}/readyz").json()
    assert ready["streams"] == {"open": 2, "wake_ups": "listening"}
    assert 'labtrain_open_event_streams{kind="jobs"} 2.0' in requests.get(f"{api}/metrics").text

    seen = len(alices.events)
    change(env, lambda session: run_and_finish(session, newer))  # claimed, then finished: sent again
    statuses = [e["data"]["status"] for e in alices.wait_for(seen + 1)[seen:] if e["data"]["id"] == newer]
    assert statuses and statuses[-1] == "succeeded"
    bobs.close()
    alices.close()


def test_a_client_resumes_after_the_server_is_killed_with_nothing_lost_or_repeated(deployment):
    home, env, tokens = deployment
    port = free_port()
    process, url = start_api(home, env, port)
    job_id = queued_job(url, tokens["alice"])
    write_event(env, job_id, {"message": "before"})
    stream = Stream(f"{url}/api/v1/jobs/{job_id}/events", tokens["alice"])
    seen = stream.wait_for(2)
    os.killpg(process.proc.pid, signal.SIGKILL)
    process.proc.wait()
    assert stream.ended.wait(10)  # the client sees the connection drop
    for message in ("while down 1", "while down 2"):
        write_event(env, job_id, {"message": message})
    process, url = start_api(home, env, port)
    resumed = Stream(f"{url}/api/v1/jobs/{job_id}/events", tokens["alice"], last_id=int(seen[-1]["id"]))
    write_event(env, job_id, {"message": "after"})
    rest = resumed.wait_for(3)
    resumed.close()
    process.stop()
    everything = [e["data"]["data"].get("message") for e in seen + rest]
    assert everything == [None, "before", "while down 1", "while down 2", "after"]  # None: the queued status
    assert [int(e["id"]) for e in seen + rest] == [1, 2, 3, 4, 5]


def test_a_stream_whose_wake_ups_were_cut_off_still_gets_its_events(deployment, api):
    _, env, tokens = deployment
    job_id = queued_job(api, tokens["alice"])
    stream = Stream(f"{api}/api/v1/jobs/{job_id}/events", tokens["alice"])
    stream.wait_for(1)
    engine = create_engine(env["LABTRAIN_DATABASE_URL"])
    with engine.connect() as conn:  # the API's LISTEN connection dies, as when the database restarts
        killed = conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()"
            )
        ).all()
    engine.dispose()
    assert killed, "the API holds a LISTEN connection"
    written = write_event(env, job_id, {"message": "missed by the listener"})
    got = stream.wait_for(2, timeout=12)  # well before the 15 s heartbeat would re-read
    stream.close()
    assert [e["data"]["data"].get("message") for e in got] == [None, "missed by the listener"]
    log.warning("after the listener was cut: received %.0f ms after writing", (stream.events[-1][0] - written) * 1000)


def run_dispatcher(env: dict, home: Path, safety_s: float) -> ServiceProcess:
    # The other tests' jobs stay queued (no dispatcher ran for them): out of the way, so the
    # slots go to the jobs these tests make.
    change(env, lambda session: session.execute(update(Job).where(Job.status == "queued").values(status="cancelled")))
    settings = {**env, "LABTRAIN_DISPATCH_SAFETY_S": str(safety_s)}
    return ServiceProcess(["dispatcher"], settings, home / f"dispatcher-{time.monotonic_ns()}.log")


def released(env: dict, job_id: str, timeout: float) -> float | None:
    """Seconds until the dispatcher released the job to the broker, or None."""
    db = Database(env["LABTRAIN_DATABASE_URL"])
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout:
            with db.session() as session:
                if session.get(Job, job_id).released_at is not None:
                    return time.monotonic() - started
            time.sleep(0.02)
        return None
    finally:
        db.dispose()


def change(env: dict, act) -> None:
    db = Database(env["LABTRAIN_DATABASE_URL"])
    with db.session() as session:
        act(session)
    db.dispose()


def worker_online(session, name: str = "cpu@test") -> None:
    worker_registry.heartbeat(
        session, name=name, queues=["cpu"], host="test", pid=1, concurrency=1, gpu_name=None, gpu_memory_mb=None
    )


def run_and_finish(session, job_id: str) -> None:
    """What a worker does with a job, in short: claim it, then record it succeeded."""
    assert lifecycle.claim(session, job_id, "cpu@test") == 1
    assert lifecycle.finish(session, job_id, lifecycle.SUCCEEDED)


def test_the_dispatcher_is_woken_by_a_worker_coming_online_a_submit_and_a_job_finishing(deployment, api):
    home, env, tokens = deployment
    dispatcher = run_dispatcher(env, home, safety_s=120)  # its timer would not run again in this test
    try:
        time.sleep(3)  # its first round is done: from now on only a wake-up starts one
        first = queued_job(api, tokens["alice"])
        assert released(env, first, timeout=1) is None  # no worker: no slot
        change(env, worker_online)
        woken_by_worker = released(env, first, timeout=30)
        second = queued_job(api, tokens["alice"])
        assert released(env, second, timeout=1) is None  # the one slot is taken by the first
        change(env, lambda session: run_and_finish(session, first))
        woken_by_finish = released(env, second, timeout=30)
        change(env, lambda session: run_and_finish(session, second))
        third = queued_job(api, tokens["alice"])
        woken_by_submit = released(env, third, timeout=30)
    finally:
        dispatcher.stop()
    waits = [woken_by_worker, woken_by_finish, woken_by_submit]
    assert all(w is not None for w in waits), dispatcher.output()[-3000:]
    log.warning("released after the change, with a 120 s timer: %s ms", [round(w * 1000) for w in waits])


def test_a_lost_wake_up_is_caught_by_the_timer_round(deployment, api):
    home, env, tokens = deployment
    change(env, lambda session: worker_online(session, "cpu@timer"))
    dispatcher = run_dispatcher(env, home, safety_s=2)
    try:
        time.sleep(3)
        engine = create_engine(env["LABTRAIN_DATABASE_URL"])
        with engine.connect() as conn:  # the dispatcher's LISTEN connection dies: the submit's wake-up is lost
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()"
                )
            )
        engine.dispose()
        job_id = queued_job(api, tokens["alice"])
        waited = released(env, job_id, timeout=30)
    finally:
        dispatcher.stop()
    assert waited is not None, dispatcher.output()[-3000:]
