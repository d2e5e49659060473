"""The submit form's queue choice in headless Chromium against a real stack (as
tests/test_dashboard_browser.py runs it) whose LABTRAIN_QUEUES adds a Celery CPU queue, served by
the stack's worker, and a GPU queue: the select offers each queue for the devices it runs jobs
on, a job submitted with a queue chosen runs there and says so, one submitted with the default
sends no queue, and a job past the chosen queue's limits gets the API's 422 at its field."""

from __future__ import annotations

import json

import pytest

from tests import test_dashboard_browser as dashboard
from tests.conftest import free_port
from tests.support.processes import create_user_token, deployment_env, start_stack, stop_all, wait_until_healthy

# The browser and page fixtures of the dashboard's own tests; `page` takes this module's stack.
browser, page, sign_in, job_id_of = dashboard.browser, dashboard.page, dashboard.sign_in, dashboard.job_id_of

QUEUES = {
    "bigmem": {"backend": "celery", "description": "the big-memory server", "max": {"memory_mb": 2048}},
    "a100": {"backend": "celery", "device": "gpu", "description": "the A100s"},
}
OPTIONS = "el => [...el.options].map(option => option.value)"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, make_pg_database, make_redis_url):
    """The stack with bigmem and a100; its one worker serves cpu and bigmem (no GPU: a100 has none)."""
    home = tmp_path_factory.mktemp("dashboard-queues")
    env = deployment_env(
        home,
        LABTRAIN_DATABASE_URL=make_pg_database(),
        LABTRAIN_BROKER_URL=make_redis_url(),
        LABTRAIN_QUEUES=json.dumps(QUEUES),
    )
    tokens = {"alice": create_user_token(env, "alice")}
    port = free_port()
    processes = start_stack(env, home, port, ["--queues", "cpu,bigmem", "--concurrency", "1"])
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", processes)
        yield f"http://127.0.0.1:{port}", tokens, env
    finally:
        stop_all(processes)


def submitted_spec(page) -> dict:
    """Submits the form and gives the spec the page sent."""
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/api/v1/jobs")) as sent:
        page.click("[data-test=submit-job]")
    return sent.value.post_data_json


def test_the_queues_offered_follow_the_jobs_device(page, stack):
    _base, tokens, _env = stack
    sign_in(page, tokens["alice"])
    page.click("[data-test=nav-submit]")
    queue = page.wait_for_selector("[data-test=field-queue]")
    # A classic job runs on the CPU: no GPU queue is offered.
    assert queue.evaluate(OPTIONS) == ["", "cpu", "bigmem"]
    assert page.inner_text("[data-test=field-queue] option[value='']") == "default (by device)"
    assert page.inner_text("[data-test=field-queue] option[value=bigmem]") == "bigmem (cpu) — the big-memory server"
    page.select_option("[data-test=field-queue]", "bigmem")
    assert "at most memory_mb 2048" in page.inner_text("[data-test=queue-hint]")

    page.select_option("[data-test=field-kind]", "network")
    assert queue.evaluate(OPTIONS) == ["", "cpu", "gpu", "bigmem", "a100"]  # auto: the API decides
    assert queue.evaluate("el => el.value") == "bigmem"  # still offered: still chosen
    page.select_option("[data-test=field-device]", "gpu")
    assert queue.evaluate(OPTIONS) == ["", "gpu", "a100"]
    assert queue.evaluate("el => el.value") == ""  # bigmem has no GPU: back to the default
    assert page.inner_text("[data-test=field-queue] option[value=a100]") == "a100 (gpu) — the A100s"
    page.select_option("[data-test=field-device]", "cpu")
    assert queue.evaluate(OPTIONS) == ["", "cpu", "bigmem"]


def test_a_job_submitted_with_a_queue_chosen_runs_there(page, stack):
    _base, tokens, _env = stack
    sign_in(page, tokens["alice"])
    page.click("[data-test=nav-submit]")
    page.select_option("[data-test=field-dataset]", "iris")
    page.select_option("[data-test=field-algorithm]", "knn")
    page.fill("[data-test=field-name]", "on-the-default")
    assert "queue" not in submitted_spec(page)  # the default: the API places it by its device
    job_id_of(page)
    assert page.inner_text("[data-test=job-queue]") == "cpu queue"

    page.click("[data-test=nav-submit]")
    page.select_option("[data-test=field-dataset]", "iris")
    page.select_option("[data-test=field-queue]", "bigmem")
    page.fill("[data-test=field-name]", "on-bigmem")
    assert submitted_spec(page)["queue"] == "bigmem"
    job_id_of(page)
    page.wait_for_selector("#job-status:text('succeeded')", timeout=120_000)  # the worker serving bigmem ran it
    assert page.inner_text("[data-test=job-name]") == "on-bigmem"
    assert page.inner_text("[data-test=job-queue]") == "bigmem queue"  # the job's queue (its spec keeps none)


def test_a_job_past_the_chosen_queues_limit_gets_the_apis_422_at_its_field(page, stack, tmp_path):
    _base, tokens, _env = stack
    script = tmp_path / "train.py"
    script.write_text("print('never runs')\n")
    sign_in(page, tokens["alice"])
    page.click("[data-test=nav-submit]")
    page.select_option("[data-test=field-kind]", "code")
    page.set_input_files("[data-test=field-code-file]", str(script))
    page.fill("[data-test=field-memory]", "4096")
    page.select_option("[data-test=field-queue]", "bigmem")
    page.click("[data-test=submit-job]")
    assert page.inner_text("[data-test=error-field]") == "resources.memory_mb"
    assert "bigmem" in page.inner_text("[data-test=error-message]")
    assert "invalid" in page.get_attribute("[data-test=field-memory]", "class")
    assert page.url.endswith("#/submit")  # nothing was created
