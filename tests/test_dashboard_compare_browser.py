"""The dashboard's compare page in headless Chromium against a real stack, as
tests/test_dashboard_browser.py runs it (its browser and page fixtures): a network search's
three trials opened from the search's page draw three curves per chart, the learning rate the
search varied is highlighted in the table, and the CSV link downloads the comparison; jobs ticked
in the job list open the same page."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests import test_dashboard_browser as dashboard
from tests.conftest import free_port
from tests.support.processes import Client, create_user_token, deployment_env, start_stack, stop_all, wait_until_healthy

browser, page, screenshots, sign_in = dashboard.browser, dashboard.page, dashboard.screenshots, dashboard.sign_in

RATES = [0.003, 0.03, 0.3]
SEARCH = {
    "name": "iris-mlp",
    "dataset": "iris",
    "framework": "pytorch",
    "network": {"layers": [{"type": "dense", "units": 8, "activation": "relu"}, {"type": "dense", "units": 3}]},
    "training": {"epochs": 4, "batch_size": 16},
    "search": {"strategy": "grid", "trials": 3, "space": {"learning_rate": {"type": "categorical", "choices": RATES}}},
}
# The curves a chart draws: its series with at least one point.
CURVES = (
    "el => [...el.querySelectorAll('g.series')].filter(g => Number(g.dataset.points) > 0).map(g => g.dataset.series)"
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, make_pg_database, make_redis_url):
    home = tmp_path_factory.mktemp("dashboard-compare")
    env = deployment_env(home, LABTRAIN_DATABASE_URL=make_pg_database(), LABTRAIN_BROKER_URL=make_redis_url())
    tokens = {name: create_user_token(env, name) for name in ("alice", "bob")}
    port = free_port()
    processes = start_stack(env, home, port, ["--queues", "cpu", "--concurrency", "2"])
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", processes)
        yield f"http://127.0.0.1:{port}", tokens, env
    finally:
        stop_all(processes)


@pytest.fixture(scope="module")
def search(stack) -> tuple[dict, list[dict]]:
    """Alice's finished search and its trials, by trial number."""
    base, tokens, _env = stack
    alice = Client(base, tokens["alice"])
    submitted = alice.post("/api/v1/jobs", json=SEARCH)
    assert submitted.status_code == 201, submitted.text
    job = alice.wait_for(submitted.json()["id"], timeout=300)
    assert job["status"] == "succeeded", job
    trials = alice.get(f"/api/v1/jobs?parent={job['id']}").json()["items"]
    return job, sorted(trials, key=lambda t: t["trial_number"])


def test_a_searchs_trials_compared_from_its_page(page, stack, search, screenshots):
    _base, tokens, _env = stack
    job, trials = search
    sign_in(page, tokens["alice"])
    page.goto(f"/#/jobs/{job['id']}")
    page.click("[data-test=compare-trials]")
    page.wait_for_url(f"**/#/compare?search={job['id']}")
    page.wait_for_selector("[data-test=compare-chart] svg")

    labels = [t["name"] for t in trials]
    charts = {el.get_attribute("data-metric"): el for el in page.query_selector_all("[data-test=compare-chart]")}
    assert {"loss", "accuracy"} <= set(charts)
    for metric, chart in charts.items():
        assert sorted(chart.evaluate(CURVES)) == sorted(labels), metric
    loss_points = [int(g.get_attribute("data-points")) for g in charts["loss"].query_selector_all("g.series")]
    assert loss_points == [4, 4, 4]  # one point per epoch
    assert page.inner_text("[data-test=compare-legend]").split("\n")[0].startswith(labels[0])

    rate = page.query_selector("[data-test=param-row][data-param='training.learning_rate']")
    assert rate.get_attribute("class") == "differs"
    assert [cell.inner_text() for cell in rate.query_selector_all("td")] == [
        str(t["spec"]["training"]["learning_rate"]) for t in trials
    ]
    framework = page.query_selector("[data-test=param-row][data-param=framework]")
    assert framework.get_attribute("class") == "same" and framework.is_visible()
    assert page.query_selector("[data-test=metric-row][data-metric=accuracy]") is not None
    page.check("[data-test=compare-only-differences]")
    assert not framework.is_visible() and rate.is_visible()
    page.screenshot(path=str(screenshots / "compare-page.png"), full_page=True)

    with page.expect_download() as download:
        page.click("[data-test=compare-csv]")
    assert download.value.suggested_filename == f"search-{job['id']}-trials.csv"
    rows = list(csv.DictReader(Path(download.value.path()).read_text().splitlines()))
    assert [row["id"] for row in rows] == [t["id"] for t in trials]
    assert sorted(float(row["training.learning_rate"]) for row in rows) == RATES
    assert all(row["loss"] and row["accuracy"] for row in rows)


def test_jobs_ticked_in_the_list_and_one_that_is_not_theirs(page, stack, search):
    _base, tokens, _env = stack
    _job, trials = search
    sign_in(page, tokens["alice"])
    row = "[data-test=job-row][data-job-id='{}'] [data-test=job-select]"
    page.check(row.format(trials[2]["id"]))
    assert page.query_selector("[data-test=compare-selected]") is None  # one job is nothing to compare
    page.check(row.format(trials[0]["id"]))
    page.click("[data-test=compare-selected]")
    page.wait_for_url(f"**/#/compare?ids={trials[2]['id']},{trials[0]['id']}")
    chart = page.wait_for_selector("[data-test=compare-chart][data-metric=loss]")
    assert chart.evaluate(CURVES) == [trials[2]["name"], trials[0]["name"]]
    headers = page.query_selector_all("[data-test=compare-table] thead th[data-item]")
    assert [th.get_attribute("data-item") for th in headers] == [trials[2]["id"], trials[0]["id"]]

    page.click("[data-test=sign-out]")
    page.wait_for_selector("[data-test=signin-form]")
    sign_in(page, tokens["bob"])  # alice's trials are an unknown id to bob
    page.goto(f"/#/compare?ids={trials[0]['id']},{trials[1]['id']}")
    assert trials[0]["id"] in page.wait_for_selector("[data-test=error-message]").inner_text()
