"""JSON logs: one object a line, and the job id on every line a job produces."""

from __future__ import annotations

import io
import json
import logging

from service.core import logs
from tests.conftest import free_port
from tests.support.processes import Client, create_user_token, deployment_env, start_stack, stop_all, wait_until_healthy


def test_json_lines_carry_the_job_id_set_for_the_job():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logs.use_format([handler], "json")
    logger = logging.getLogger("labtrain.test-logs")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.warning("outside")
        token = logs.JOB_ID.set("job-123")
        try:
            logger.info("inside %s", "a job")
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception("failed")
        finally:
            logs.JOB_ID.reset(token)
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert "job_id" not in lines[0] and lines[0]["level"] == "warning" and lines[0]["message"] == "outside"
    assert lines[1]["job_id"] == "job-123" and lines[1]["message"] == "inside a job"
    assert lines[2]["job_id"] == "job-123" and "ValueError: boom" in lines[2]["exception"]
    assert lines[1]["time"].endswith("Z") and lines[1]["logger"] == "labtrain.test-logs"


def test_a_worker_and_dispatcher_log_json_with_the_job_id(tmp_path, make_pg_database, make_redis_url):
    env = deployment_env(
        tmp_path,
        LABTRAIN_DATABASE_URL=make_pg_database(),
        LABTRAIN_BROKER_URL=make_redis_url(),
        LABTRAIN_LOG_FORMAT="json",
    )
    token = create_user_token(env, "alice")
    port = free_port()
    processes = start_stack(env, tmp_path, port, ["--queues", "cpu", "--concurrency", "1"], api_workers=1)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", processes)
        client = Client(f"http://127.0.0.1:{port}", token)
        job = client.post("/api/v1/jobs", json={"dataset": "iris", "algorithm": "knn"}).json()
        assert client.wait_for(job["id"])["status"] == "succeeded"
    finally:
        stop_all(processes)
    worker_lines = _json_lines(tmp_path / "worker-0.log")
    mine = [line for line in worker_lines if job["id"] in line["message"]]
    assert mine and all(line.get("job_id") == job["id"] for line in mine)
    assert any(line["logger"] == "labtrain.job" and line["job_id"] == job["id"] for line in worker_lines)
    dispatcher_lines = _json_lines(tmp_path / "dispatcher.log")
    assert any(job["id"] in line["message"] for line in dispatcher_lines)


def _json_lines(path) -> list[dict]:
    """The log's JSON lines (a worker's stderr also holds the frameworks' own native output)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
