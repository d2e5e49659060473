"""Preemption with real processes on PostgreSQL and Redis: a debug job waiting behind a long
batch network job on the only worker slot gets it; the batch job checkpoints at an epoch's end,
goes back to the queue with its attempt not spent, and resumes from its checkpoint with each
epoch reported once; the preemption is an event, on the job, and in /metrics."""

from __future__ import annotations

import requests

from tests.service.lab.test_lab_server import LENET, epochs_and_attempts, start_lab, wait_epoch

DEBUG_JOB = {"dataset": "iris", "algorithm": "knn", "tier": "debug"}


def test_a_waiting_debug_job_takes_a_batch_jobs_slot_and_the_batch_job_resumes(
    tmp_path, make_pg_database, make_redis_url
):
    lab = start_lab(
        tmp_path,
        make_pg_database,
        make_redis_url(),
        ["--queues", "cpu", "--concurrency", "1", "--name", "w1@lab"],
        # Asked at the round the debug job's submit wakes: with a wait of a second or two, the
        # batch job's last epochs could end first, and nothing would be preempted.
        LABTRAIN_PREEMPT_AFTER_S="0",
    )
    try:
        anna, ben = lab.student("anna"), lab.student("ben")
        batch = anna.post("/api/v1/jobs", json={**LENET, "training": {"epochs": 6, "batch_size": 32}}).json()["id"]
        wait_epoch(anna, batch, 2)
        debug = ben.post("/api/v1/jobs", json=DEBUG_JOB).json()
        assert debug["tier"] == "debug" and debug["status"] == "queued"
        debug = ben.wait_for(debug["id"], timeout=120)
        assert debug["status"] == "succeeded", debug["error"]
        job = anna.wait_for(batch, timeout=300)
        assert job["status"] == "succeeded", job["error"]
        assert debug["finished_at"] < job["finished_at"]  # it ran while the batch job was still unfinished

        assert (job["preemptions"], job["attempt"], job["preempt_requested"]) == (1, 1, False)
        epochs, attempts = epochs_and_attempts(anna, batch)
        assert epochs == list(range(1, 7))  # each epoch once: the second run began after the checkpoint
        assert attempts == [1, 1]  # the yielded attempt was given back
        events = anna.get(f"/api/v1/jobs/{batch}/events").json()["items"]
        asked = [e for e in events if e["data"].get("preempted_by")]
        requeued = [e for e in events if e["type"] == "status" and e["data"].get("reason") == "preempted"]
        assert [e["data"]["preempted_by"] for e in asked] == [debug["id"]] and len(requeued) == 1
        assert any("resuming from the checkpoint of epoch" in e["data"].get("message", "") for e in events)
        assert asked[0]["seq"] < requeued[0]["seq"]
        metrics = requests.get(f"http://127.0.0.1:{lab.port}/metrics", timeout=10).text
        assert 'labtrain_preemptions_total{queue="cpu"} 1.0' in metrics
    finally:
        lab.stop()
