"""The dashboard's Runs page in headless Chromium against a real API where MLflow's own client
logged two runs (as a laptop logs them) beside a job: the page lists them with their experiment
and latest metrics, two ticked open side by side with a loss curve each by step and the
learning rate that differs highlighted; the same page puts a run beside a job; another user's
Runs page is empty."""

from __future__ import annotations

import pytest

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
    """The API (it serves the dashboard), alice's two runs (by name) and her job."""
    home = tmp_path_factory.mktemp("dashboard-runs")
    with mlflow_server(home, make_pg_database(), make_redis_url()) as server:
        course(server, ta="bob")  # bob assists the course: he sees alice's runs; carol below does not
        runs = log_runs(server, "alice")
        job = finished_job(server, "alice")
        yield server.url, server.tokens, server.env, runs, job


def test_two_runs_ticked_on_the_runs_page_are_compared(page, stack, screenshots):
    _url, tokens, _env, runs, _job = stack
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
    _url, tokens, env, runs, job = stack
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
