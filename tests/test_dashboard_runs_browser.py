"""The dashboard's Runs page in headless Chromium against a real API where MLflow's own client
logged two runs (as a laptop logs them) beside a job: the page lists them with their experiment
and latest metrics, two ticked open side by side with a loss curve each by step and the
learning rate that differs highlighted; the same page puts a run beside a job; another user's
Runs page is empty; the links MLflow's client prints (#/experiments/<id>/runs/<run id>) open the
run on its experiment's Runs page, or the job a job's run is."""

from __future__ import annotations

import pytest
import requests

from service.tracking.run_ids import job_run_id
from tests import test_dashboard_browser as dashboard
from tests.support.laptop_runs import EXPERIMENT, STEPS, course, finished_job, log_runs
from tests.support.mlflow_server import mlflow_server
from tests.support.processes import create_user_token

browser, page, screenshots, sign_in = dashboard.browser, dashboard.page, dashboard.screenshots, dashboard.sign_in
CURVES = (
    "el => [...el.querySelectorAll('g.series')].filter(g => Number(g.dataset.points) > 0).map(g => g.dataset.series)"
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, make_pg_database, make_redis_url):
    """The API (it serves the dashboard), alice's two runs (by name), her job and the server."""
    home = tmp_path_factory.mktemp("dashboard-runs")
    with mlflow_server(home, make_pg_database(), make_redis_url()) as server:
        course(server, ta="bob")  # bob assists the course: he sees alice's runs; carol below does not
        runs = log_runs(server, "alice")
        job = finished_job(server, "alice")
        yield server.url, server.tokens, server.env, runs, job, server


def test_two_runs_ticked_on_the_runs_page_are_compared(page, stack, screenshots):
    _url, tokens, _env, runs, _job, _server = stack
    sign_in(page, tokens["alice"])
    page.click("[data-test=nav-runs]")
    page.wait_for_url("**/#/runs")
    rows = page.wait_for_selector("[data-test=run-list]").query_selector_all("[data-test=run-row]")
    assert [row.get_attribute("data-run-id") for row in rows] == [runs["lr-0.1"], runs["lr-0.01"]]
    assert rows[0].query_selector("[data-test=run-name]").inner_text() == "lr-0.1"
    assert rows[0].query_selector("[data-test=run-experiment]").inner_text() == EXPERIMENT
    assert "accuracy 0.6" in rows[0].inner_text() and "succeeded" in rows[0].inner_text()

    row = "[data-test=run-row][data-run-id='{}'] [data-test=run-select]"
    page.check(row.format(runs["lr-0.01"]))
    assert page.query_selector("[data-test=compare-selected]") is None  # one run is nothing to compare
    page.check(row.format(runs["lr-0.1"]))
    assert page.inner_text("[data-test=compare-selected]") == "Compare 2"
    page.click("[data-test=compare-selected]")
    page.wait_for_url(f"**/#/compare?ids={runs['lr-0.01']},{runs['lr-0.1']}")
    chart = page.wait_for_selector("[data-test=compare-chart][data-metric=loss] svg")
    loss = page.query_selector("[data-test=compare-chart][data-metric=loss]")
    assert loss.evaluate(CURVES) == ["lr-0.01", "lr-0.1"]
    assert [int(g.get_attribute("data-points")) for g in chart.query_selector_all("g.series")] == [STEPS, STEPS]
    assert page.inner_text("h1") == "2 runs compared"
    rate = page.query_selector("[data-test=param-row][data-param=lr]")
    assert rate.get_attribute("class") == "differs"
    assert [cell.inner_text() for cell in rate.query_selector_all("td")] == ["0.01", "0.1"]
    optimizer = page.query_selector("[data-test=param-row][data-param=optimizer]")
    assert optimizer.get_attribute("class") == "same"
    page.screenshot(path=str(screenshots / "compare-runs-page.png"), full_page=True)


def test_a_run_beside_a_job_and_the_runs_another_user_sees(page, stack):
    _url, tokens, env, runs, job, _server = stack
    sign_in(page, tokens["alice"])
    page.goto(f"/#/compare?ids={runs['lr-0.1']},{job}")
    chart = page.wait_for_selector("[data-test=compare-chart][data-metric=loss]")
    chart.wait_for_selector("svg")
    assert chart.evaluate(CURVES) == ["lr-0.1", "job-lr-0.05"]
    assert page.inner_text("h1") == "2 jobs and runs compared"
    links = page.query_selector_all("[data-test=compare-table] thead th[data-item] a")
    assert links[0].get_attribute("href") == f"#/runs?experiment={EXPERIMENT}"
    assert links[1].get_attribute("href") == f"#/jobs/{job}"

    page.click("[data-test=sign-out]")
    page.wait_for_selector("[data-test=signin-form]")
    sign_in(page, tokens["bob"])  # the course's TA
    page.goto("/#/runs")
    assert len(page.wait_for_selector("[data-test=run-list]").query_selector_all("[data-test=run-row]")) == 2
    carol = create_user_token(env, "carol")
    page.click("[data-test=sign-out]")
    page.wait_for_selector("[data-test=signin-form]")
    sign_in(page, carol)
    page.goto("/#/runs")
    page.wait_for_selector("[data-test=no-runs]")
    assert not page.query_selector_all("[data-test=run-row]")


def printed_links(server, run_id: str) -> tuple[str, str]:
    """The run's and its experiment's links as MLflow's client prints them when a run ends."""
    done = server.run_client("alice", f"from mlflow import MlflowClient; MlflowClient().set_terminated({run_id!r})")
    assert done.returncode == 0, done.stderr[-5000:]
    lines = done.stdout.splitlines()
    run = next(line for line in lines if " View run " in line)
    experiment = next(line for line in lines if " View experiment at: " in line)
    return run.split(" at: ")[1], experiment.split(" at: ")[1]


def test_mlflows_links_open_the_run_or_the_job_behind_them(page, stack):
    url, tokens, _env, runs, job, server = stack
    run_link, experiment_link = printed_links(server, runs["lr-0.1"])
    assert run_link.startswith(f"{url}/#/experiments/") and run_link.endswith(f"/runs/{runs['lr-0.1']}")
    experiment = experiment_link.rsplit("/", 1)[1]
    sign_in(page, tokens["alice"])

    page.goto(run_link)
    page.wait_for_url(lambda at: at.endswith(f"#/runs?experiment={experiment}&run={runs['lr-0.1']}"))
    marked = page.wait_for_selector("[data-test=run-row][aria-current=true]")
    assert marked.get_attribute("data-run-id") == runs["lr-0.1"]
    assert len(page.query_selector_all("[data-test=run-row]")) == 2
    assert EXPERIMENT in page.inner_text("[data-test=runs-experiment]")  # its name, not its id
    assert page.query_selector("[data-test=run-not-listed]") is None

    page.goto(experiment_link)
    page.wait_for_url(lambda at: at.endswith(f"#/runs?experiment={experiment}"))
    # The run page's marked row goes once the experiment's page (no run marked) replaces it.
    page.wait_for_selector("[data-test=run-row][aria-current]", state="detached")
    assert len(page.wait_for_selector("[data-test=run-list]").query_selector_all("[data-test=run-row]")) == 2
    # A page of the run in MLflow's UI (its artifacts) leads to the run too.
    page.goto(f"/#/experiments/{experiment}/runs/{runs['lr-0.01']}/artifacts")
    page.wait_for_url(lambda at: at.endswith(f"&run={runs['lr-0.01']}"))
    marked = page.wait_for_selector("[data-test=run-row][aria-current=true]")
    assert marked.get_attribute("data-run-id") == runs["lr-0.01"]

    # A job's run is the job: its link opens the job's page, and Back leaves the link behind.
    auth = {"Authorization": f"Bearer {tokens['alice']}"}
    got = requests.get(f"{url}/api/2.0/mlflow/runs/get", params={"run_id": job_run_id(job)}, headers=auth, timeout=30)
    job_experiment = got.json()["run"]["info"]["experiment_id"]
    page.goto(f"/#/experiments/{job_experiment}/runs/{job_run_id(job)}")
    page.wait_for_url(f"**/#/jobs/{job}")
    assert page.wait_for_selector("[data-test=job-name]").inner_text() == "job-lr-0.05"
    page.go_back()
    page.wait_for_url(lambda at: at.endswith(f"&run={runs['lr-0.01']}"))

    # A run the user cannot see (or that is gone) is said to be missing, not silently dropped.
    unknown = "f" * 32
    page.goto(f"/#/experiments/{experiment}/runs/{unknown}")
    assert unknown in page.wait_for_selector("[data-test=run-not-listed]").inner_text()
