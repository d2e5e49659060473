"""Redis restarts while a worker runs a job: the worker lives on, the running job finishes on
its first attempt, and a job submitted afterwards runs too (issue: the worker used to exit with
`Unrecoverable error: AttributeError(... 'hostname')` while putting back its unacked message)."""

from __future__ import annotations

import time

from tests.service.lab.test_lab_server import epochs_and_attempts, start_lab, wait_epoch
from tests.support.redis_server import RedisServer

# A few seconds of training, so Redis can go away in the middle of it.
SLOW_JOB = {
    "dataset": "digits",
    "framework": "pytorch",
    "network": {"preset": "feedforward"},
    "training": {"epochs": 30},
}


def test_a_worker_running_a_job_survives_redis_restarting(tmp_path, make_pg_database):
    server = RedisServer()
    # Two pool processes, one job: the worker keeps a BRPOP waiting for a second job while the
    # first runs, which is what let the loss of Redis end the worker.
    lab = start_lab(tmp_path, make_pg_database, server.url, ["--queues", "cpu", "--concurrency", "2"])
    worker = lab.processes[1]
    try:
        client = lab.student("ada")
        running = client.post("/api/v1/jobs", json=SLOW_JOB).json()["id"]
        wait_epoch(client, running, 1)
        server.stop()  # Redis goes away with the job's unacked message in it
        time.sleep(2)
        server.start()

        done = client.wait_for(running, timeout=180)
        log = worker.log_path.read_text(errors="replace")
        assert "Unrecoverable error" not in log, log[-3000:]
        assert worker.proc.poll() is None, log[-3000:]
        assert (done["status"], done["attempt"]) == ("succeeded", 1)
        assert epochs_and_attempts(client, running)[1] == [1]  # it started running once

        after = client.wait_for(client.post("/api/v1/jobs", json=SLOW_JOB).json()["id"], timeout=120)
        assert (after["status"], after["attempt"]) == ("succeeded", 1)
        assert worker.proc.poll() is None
    finally:
        lab.stop()
        server.stop()
