"""The chaos drill of issue 24: a search on real processes (PostgreSQL, its own Redis, the
dispatcher, two workers) while, one after another and with trials running, a worker is
SIGKILLed, the dispatcher is SIGKILLed, and Redis is stopped and started again empty. The
search still runs each trial exactly once to success; and cancelling a search stops its
running trials."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from service.core.orm import Job
from tests.conftest import free_port
from tests.service.lab.test_lab_server import FAST_RECOVERY, Lab
from tests.support.processes import Client, ServiceProcess, deployment_env, start_stack, wait_until_healthy
from tests.support.redis_server import RedisServer

MAX_ATTEMPTS = int(FAST_RECOVERY["LABTRAIN_MAX_ATTEMPTS"])
TRIALS = 36
SEARCH = {
    "name": "wine-knn-chaos",
    "dataset": "wine",
    "algorithm": "knn",
    "evaluation": {"cv": 3, "seed": 0},
    "preprocessing": {"scale": True},
    "search": {
        "strategy": "random",
        "trials": TRIALS,
        "parallel": 4,
        "seed": 11,
        "space": {"n_neighbors": {"type": "int", "low": 1, "high": 60}},
    },
}
WINE_ROW = [13.2, 1.78, 2.14, 11.2, 100, 2.65, 2.76, 0.26, 1.28, 4.38, 1.05, 3.4, 1050]
FINISHED = ("succeeded", "failed", "cancelled")


class ChaosLab(Lab):
    """The deployment of the drill (test_lab_server.py's Lab), with its own Redis."""

    redis: RedisServer

    def kill_dispatcher(self) -> None:
        """SIGKILL the running dispatcher, as a power loss would, and start another."""
        running = [p for p in self.processes if p.proc.poll() is None and "dispatcher" in p.proc.args]
        assert len(running) == 1, running
        os.killpg(running[0].proc.pid, signal.SIGKILL)
        running[0].proc.wait()
        log = self.home / f"dispatcher-{len(self.processes)}.log"
        self.processes.append(ServiceProcess(["dispatcher"], self.env, log))

    def running_trials(self, search_id: str) -> dict[str, list[str]]:
        """The search's running trials by worker, read at once from the database; asserts the
        search has not ended (one that ended first would leave the drill nothing to break)."""
        with self.db.session() as session:
            assert session.get(Job, search_id).status not in FINISHED, "the search ended before the drill"
            rows = session.execute(
                select(Job.id, Job.worker).where(Job.parent_id == search_id, Job.status == "running")
            ).all()
        found: dict[str, list[str]] = {}
        for job_id, worker in rows:
            found.setdefault(worker, []).append(job_id)
        return found

    def finished_trials(self, search_id: str) -> int:
        with self.db.session() as session:
            finished = select(func.count()).where(Job.parent_id == search_id, Job.status.in_(FINISHED))
            return session.scalar(finished)

    def running_after(
        self, search_id: str, done_at_least: int, dead: tuple[str, ...] = ()
    ) -> Callable[[], dict[str, list[str]]]:
        """A check for wait_until: the running trials by live worker, once `done_at_least`
        trials finished."""

        def check() -> dict[str, list[str]]:
            running = {w: ids for w, ids in self.running_trials(search_id).items() if w not in dead}
            return running if self.finished_trials(search_id) >= done_at_least else {}

        return check


@pytest.fixture(scope="module")
def chaos_lab(tmp_path_factory, make_pg_database):
    server = RedisServer()
    home = tmp_path_factory.mktemp("chaos-lab")
    env = deployment_env(
        home, LABTRAIN_DATABASE_URL=make_pg_database(), LABTRAIN_BROKER_URL=server.url, **FAST_RECOVERY
    )
    port = free_port()
    lab = ChaosLab(
        home, env, port, start_stack(env, home, port, ["--queues", "cpu", "--concurrency", "2", "--name", "w1@chaos"])
    )
    try:
        lab.add_worker("--queues", "cpu", "--concurrency", "1", "--name", "w2@chaos")
        wait_until_healthy(f"http://127.0.0.1:{port}", lab.processes)
        lab.redis = server
        yield lab
    finally:
        lab.stop()
        server.stop()


def trials_of(client: Client, search_id: str) -> list[dict]:
    return client.get("/api/v1/jobs", params={"parent": search_id, "limit": 500}).json()["items"]


def events_of(client: Client, job_id: str) -> list[dict]:
    return client.get(f"/api/v1/jobs/{job_id}/events").json()["items"]


def wait_until(what: str, check: Callable[[], object], timeout: float = 60) -> object:
    """The first truthy answer of `check`; the timeout only guards against a hang."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise TimeoutError(f"{what}: not within {timeout} s")


def test_a_search_loses_and_doubles_no_trial_through_kills_and_a_redis_restart(chaos_lab):
    client = chaos_lab.student("chaos")
    submitted = client.post("/api/v1/jobs", json=SEARCH)
    assert submitted.status_code == 201, submitted.text
    search_id = submitted.json()["id"]

    # 1. A worker dies with its pool processes while it runs trials; another takes its place. A
    # trial may end between the look and the kill: the kill counts once a trial is still running
    # on the dead worker after it (at most three kills).
    dead, caught = [], []
    while not caught and len(dead) < 3:
        running = wait_until("a trial running", chaos_lab.running_after(search_id, 4 + 2 * len(dead), tuple(dead)))
        name = max(running, key=lambda w: len(running[w]))
        chaos_lab.kill_worker(name)
        dead.append(name)
        caught = chaos_lab.running_trials(search_id).get(name, [])
        chaos_lab.add_worker("--queues", "cpu", "--concurrency", "2", "--name", f"{name}-again")
    assert caught, f"no kill of {dead} caught a trial running"

    # 2. The dispatcher, which drives the search, dies; a new one carries on from the saved state.
    wait_until("a trial running after the worker's kill", chaos_lab.running_after(search_id, 12, tuple(dead)))
    chaos_lab.kill_dispatcher()

    # 3. Redis goes away, and the trials it held for the workers with it.
    wait_until("a trial running after the dispatcher's kill", chaos_lab.running_after(search_id, 18, tuple(dead)))
    chaos_lab.redis.stop()
    time.sleep(2)
    chaos_lab.redis.start()

    search = client.wait_for(search_id, timeout=180)
    assert search["status"] == "succeeded", search
    trials = sorted(trials_of(client, search_id), key=lambda t: t["trial_number"])
    numbered = [(t["trial_number"], t["id"], t["attempt"]) for t in trials]
    assert [t["trial_number"] for t in trials] == list(range(TRIALS)), numbered  # none lost, none doubled
    assert [t["status"] for t in trials] == ["succeeded"] * TRIALS, [(t["trial_number"], t["error"]) for t in trials]
    assert all(1 <= t["attempt"] <= MAX_ATTEMPTS for t in trials), [t["attempt"] for t in trials]
    assert {t["id"]: t["attempt"] for t in trials if t["id"] in caught} == dict.fromkeys(caught, 2)  # ran again
    for t in trials:  # each trial ended once, and started once per attempt
        statuses = [e["data"]["status"] for e in events_of(client, t["id"]) if e["type"] == "status"]
        assert statuses.count("succeeded") == 1, (t["trial_number"], statuses)
        assert statuses.count("running") == t["attempt"], (t["trial_number"], statuses)

    # The search heard each trial's score once, and its leaderboard holds each trial once.
    told = [e["data"]["number"] for e in events_of(client, search_id) if e["type"] == "trial"]
    assert sorted(told) == list(range(TRIALS))
    result = search["result"]
    assert result["evaluations"] == TRIALS
    assert sorted(r["number"] for r in result["trials"]) == list(range(TRIALS))
    scores = {t["id"]: t["metrics"]["cv"]["mean"] for t in trials}
    assert result["best_value"] == max(scores.values()) == scores[result["best_trial"]]

    # The best trial kept its model, and it predicts.
    best = next(t for t in trials if t["id"] == result["best_trial"])
    assert best["result"]["model_id"] == result["model_id"]
    predicted = client.post(f"/api/v1/models/{result['model_id']}/predict", json={"instances": [WINE_ROW]})
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["predictions"] == [0]


CANCELLED_SEARCH = {
    "name": "digits-net-cancel",
    "dataset": "digits",
    "framework": "pytorch",
    "network": {"preset": "feedforward"},
    "training": {"epochs": 200},
    "search": {
        "strategy": "random",
        "trials": 12,
        "parallel": 3,
        "seed": 0,
        "space": {"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
    },
}


def test_cancelling_a_search_stops_its_running_trials(chaos_lab):
    client = chaos_lab.student("canceller")
    submitted = client.post("/api/v1/jobs", json=CANCELLED_SEARCH)
    assert submitted.status_code == 201, submitted.text
    search_id = submitted.json()["id"]

    def epochs_running() -> list[dict]:
        trials = trials_of(client, search_id)
        running = [t for t in trials if t["status"] == "running" and (t["progress"] or {}).get("epoch", 0) >= 1]
        return trials if len(running) >= 2 else []

    started = wait_until("two trials training", epochs_running)
    assert client.post(f"/api/v1/jobs/{search_id}/cancel").status_code == 202

    search = client.wait_for(search_id, timeout=30)
    assert search["status"] == "cancelled", search
    trials = wait_until(
        "every trial ended",
        lambda: (found := trials_of(client, search_id)) and all(t["status"] in FINISHED for t in found) and found,
        timeout=30,
    )
    assert {t["status"] for t in trials} == {"cancelled"}, [(t["trial_number"], t["status"]) for t in trials]
    assert all(t["progress"]["epoch"] < 200 for t in trials if t["progress"])  # stopped, not run out
    assert {t["id"] for t in trials} == {t["id"] for t in started}  # no trial started after the cancel
