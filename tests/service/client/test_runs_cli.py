"""`labtrain runs`, run as a user runs it (the installed script) against a real API where
MLflow's own client logged two runs: the table (id, name, experiment, status, a few latest
metrics), --experiment, --json; and the runs' ids given to `labtrain compare` beside a job's."""

from __future__ import annotations

import re

import pytest

from service.client.run_commands import metrics_text
from tests.service.client.test_client_cli import as_json, client_env, labtrain
from tests.support.laptop_runs import EXPERIMENT, course, finished_job, log_runs
from tests.support.mlflow_server import mlflow_server


@pytest.fixture(scope="module")
def logged_in(tmp_path_factory, make_pg_database, make_redis_url):
    """Alice's shell after `labtrain login`, her two runs (by name) and her job."""
    home = tmp_path_factory.mktemp("runs-cli")
    with mlflow_server(home, make_pg_database(), make_redis_url()) as server:
        course(server, ta="bob")
        runs = log_runs(server, "alice")
        job = finished_job(server, "alice")
        alice = client_env(tmp_path_factory.mktemp("alice-home"))
        assert labtrain(["login", "--url", server.url, "--token", server.tokens["alice"]], alice).returncode == 0
        yield alice, runs, job


def test_the_table_lists_the_users_runs_newest_first(logged_in):
    alice, runs, _job = logged_in
    result = labtrain(["runs"], alice)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "EXPERIMENT", "STATUS", "STARTED", "METRICS"]
    assert [row.split()[:4] for row in rows] == [
        [runs["lr-0.1"], "lr-0.1", EXPERIMENT, "succeeded"],
        [runs["lr-0.01"], "lr-0.01", EXPERIMENT, "succeeded"],
    ]
    assert "accuracy 0.6 loss 0.2" in rows[0]  # the latest values: step 4

    # The same rows (STARTED reads "3s ago" or "4s ago" by when each command ran).
    filtered = labtrain(["runs", "--experiment", EXPERIMENT], alice).stdout
    assert without_ages(filtered) == without_ages(result.stdout)
    other = labtrain(["runs", "--experiment", "Default"], alice)
    assert other.returncode == 0 and other.stdout == "" and "no runs in experiment Default" in other.stderr
    listed = as_json(labtrain(["runs", "--json", "--limit", "1"], alice))
    assert [run["id"] for run in listed["items"]] == [runs["lr-0.1"]] and listed["next_cursor"]
    every = as_json(labtrain(["runs", "--json", "--limit", "1", "--all"], alice))
    assert [run["id"] for run in every["items"]] == [runs["lr-0.1"], runs["lr-0.01"]]


def test_runs_and_a_job_compared(logged_in):
    alice, runs, job = logged_in
    result = labtrain(["compare", runs["lr-0.01"], runs["lr-0.1"], job], alice)
    assert result.returncode == 0, result.stderr
    rows = {line[2:].split()[0]: line for line in result.stdout.splitlines()[1:] if line[2:].strip()}
    assert rows["id"].split()[1:] == [runs["lr-0.01"], runs["lr-0.1"], job]
    assert rows["lr"].startswith("* ") and rows["lr"].split()[2:] == ["0.01", "0.1", "-"]
    assert rows["optimizer"].startswith("* ")  # the job has none


@pytest.mark.fast
def test_a_rows_metrics_are_the_first_few_and_a_count_of_the_rest():
    run = {"metrics": {"a": 1.0, "b": 0.123456, "c": 3, "d": 4}, "metric_count": 70}
    assert metrics_text(run) == "a 1 b 0.1235 c 3 (+67)"
    assert metrics_text({"metrics": {}, "metric_count": 0}) == "-"


def without_ages(table: str) -> str:
    return re.sub(r"(\d+[smhd] ?)+ ago", "", table)
