"""`labtrain compare`, run as a user runs it (the installed script) against a real service
(PostgreSQL, Redis, dispatcher, a CPU worker, the API) with a network search's three trials:
the table marks the learning rate that differs, draws each curve as a sparkline, `--csv` writes
the CSV; and the sparkline itself with no server."""

from __future__ import annotations

import csv
import json

import pytest

from service.client.compare_commands import ASCII_LEVELS, BLOCKS, sparkline, table_lines
from tests.service.client.test_client_cli import as_json, client_env, labtrain
from tests.support.processes import Client, create_user_token, deployment_env, start_stack, stop_all, wait_until_healthy

RATES = [0.003, 0.03, 0.3]
SEARCH = {
    "name": "iris-mlp",
    "dataset": "iris",
    "framework": "pytorch",
    "network": {"layers": [{"type": "dense", "units": 8, "activation": "relu"}, {"type": "dense", "units": 3}]},
    "training": {"epochs": 4, "batch_size": 16},
    "search": {"strategy": "grid", "trials": 3, "space": {"learning_rate": {"type": "categorical", "choices": RATES}}},
}


@pytest.fixture(scope="module")
def searched(tmp_path_factory, make_pg_database, make_redis_url):
    """A stack, alice logged in with the CLI, and her finished search: (her env, the search, its trials' ids)."""
    home = tmp_path_factory.mktemp("compare-cli")
    env = deployment_env(home, LABTRAIN_DATABASE_URL=make_pg_database(), LABTRAIN_BROKER_URL=make_redis_url())
    from tests.conftest import free_port

    port = free_port()
    processes = start_stack(env, home, port, ["--queues", "cpu", "--concurrency", "2"], api_workers=1)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(url, processes)
        token = create_user_token(env, "alice")
        alice = client_env(tmp_path_factory.mktemp("alice-home"))
        assert labtrain(["login", "--url", url, "--token", token], alice).returncode == 0
        search_id = labtrain(["submit", "-"], alice, stdin=json.dumps(SEARCH)).stdout.strip()
        client = Client(url, token)
        search = client.wait_for(search_id, timeout=300)
        assert search["status"] == "succeeded", search
        trials = client.get(f"/api/v1/jobs?parent={search_id}").json()["items"]
        yield alice, search, sorted(trials, key=lambda t: t["trial_number"])
    finally:
        stop_all(processes)


def test_a_searchs_trials_side_by_side_with_the_differing_rate_marked(searched):
    alice, search, trials = searched
    result = labtrain(["compare", "--search", search["id"]], alice)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines[0]
    assert [header.index(t["name"]) for t in trials] == sorted(header.index(t["name"]) for t in trials)
    rows = {line[2:].split()[0]: line for line in lines[1:] if line[2:].strip()}
    assert rows["training.learning_rate"].startswith("* ")
    rates = [t["spec"]["training"]["learning_rate"] for t in trials]  # the grid's own order
    assert sorted(rates) == RATES and rows["training.learning_rate"].split()[2:] == [str(rate) for rate in rates]
    assert rows["framework"].startswith("  ") and rows["framework"].split()[1:] == ["pytorch"] * 3
    assert rows["id"].split()[1:] == [t["id"] for t in trials]
    # Each trial's loss: its final value and its curve over the four epochs.
    loss_cells = rows["loss"][2:].split()[1:]
    assert len(loss_cells) == 6
    for value, spark in zip(loss_cells[::2], loss_cells[1::2]):
        float(value)
        assert len(spark) == 4 and set(spark) <= set(BLOCKS) | set(ASCII_LEVELS)

    only = labtrain(["compare", "--search", search["id"], "-d"], alice)
    assert "training.learning_rate" in only.stdout and "framework" not in only.stdout


def test_csv_writes_a_row_per_job(searched, tmp_path):
    alice, _search, trials = searched
    ids = [t["id"] for t in trials]
    target = tmp_path / "trials.csv"
    result = labtrain(["compare", *ids, "--csv", str(target)], alice)
    assert result.returncode == 0, result.stderr
    assert "wrote 3 rows" in result.stderr and "training.learning_rate" in result.stdout  # the table too
    rows = list(csv.DictReader(target.read_text().splitlines()))
    assert [row["id"] for row in rows] == ids
    assert [float(row["training.learning_rate"]) for row in rows] == [
        t["spec"]["training"]["learning_rate"] for t in trials
    ]
    assert all(row["accuracy"] and row["loss"] for row in rows)

    to_stdout = labtrain(["compare", *ids, "--csv", "-"], alice)
    assert to_stdout.stdout == target.read_text()
    as_object = as_json(labtrain(["compare", *ids, "--json"], alice))
    assert [item["id"] for item in as_object["items"]] == ids and as_object["differ"]["params"]


def test_what_cannot_be_compared_is_a_clear_message(searched):
    alice, search, trials = searched
    unknown = "0" * 22
    missing = labtrain(["compare", trials[0]["id"], unknown], alice)
    assert missing.returncode == 1 and unknown in missing.stderr
    one = labtrain(["compare", trials[0]["id"]], alice)
    assert one.returncode == 1 and "ids" in one.stderr
    nothing = labtrain(["compare"], alice)
    assert nothing.returncode == 2 and "--search" in nothing.stderr
    not_a_search = labtrain(["compare", "--search", trials[0]["id"]], alice)
    assert not_a_search.returncode == 1 and "not a search" in not_a_search.stderr


@pytest.mark.fast
def test_a_sparkline_spans_the_levels_in_a_few_characters():
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == BLOCKS
    assert sparkline([0.5, 0.5, 0.5]) == BLOCKS[4] * 3
    assert sparkline(list(range(100)), ASCII_LEVELS) == "_.-~=+*#"
    assert len(sparkline([3.0, 1.0] * 50)) == 8


@pytest.mark.fast
def test_the_table_marks_rows_that_differ():
    def item(job_id, rate, loss):
        return {
            "id": job_id,
            "label": f"run-{job_id}",
            "status": "succeeded",
            "params": {"lr": rate, "algorithm": "mlp", "shuffle": True},
            "metrics": {"loss": loss},
            "series": {"acc": {"x": "step", "points": [[0, 0.1], [1, 0.5]]}},
        }

    comparison = {
        "items": [item("a", 0.1, 0.5), item("b", 0.01, 0.25)],
        "params": ["lr", "algorithm", "shuffle"],
        "metrics": ["loss", "acc"],
        "differ": {"params": ["lr"], "metrics": ["loss"]},
    }
    lines = [line for line, _differs in table_lines(comparison, False, BLOCKS)]
    assert lines[0].split() == ["run-a", "run-b"]
    assert "* lr" in "\n".join(lines) and "  algorithm" in "\n".join(lines) and "true" in "\n".join(lines)
    assert [line.split()[1:] for line in lines if line.startswith("  acc")] == [["0.5", "▁█", "0.5", "▁█"]]
    marked = [line for line, differs in table_lines(comparison, True, BLOCKS) if differs]
    assert [line.split()[1] for line in marked] == ["lr", "loss"]
