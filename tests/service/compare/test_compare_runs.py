"""MLflow runs that are no job, logged by MLflow's own client against a real labtrain API (as a
laptop logs them): GET /api/v1/runs lists them for their owner and the course's TA, for no one
else; two of them and a job compared side by side (their params differ, their curves are by
step), in JSON and CSV; a job's MLflow run id names the job; another user's run is the 404 an
unknown id gets."""

from __future__ import annotations

import csv
import io

import pytest

from service.core.orm import new_id
from service.tracking.runs import job_run_id
from tests.support.laptop_runs import EXPERIMENT, RATES, STEPS, course, finished_job, log_runs, loss
from tests.support.mlflow_server import mlflow_server
from tests.support.processes import Client


@pytest.fixture(scope="module")
def logged(tmp_path_factory, make_pg_database, make_redis_url):
    """The server, each user's client, alice's two runs (by name) and her job."""
    home = tmp_path_factory.mktemp("compare-runs")
    with mlflow_server(home, make_pg_database(), make_redis_url(), users=("alice", "bob", "tara")) as server:
        course(server)
        runs = log_runs(server, "alice")
        job = finished_job(server, "alice")
        clients = {name: Client(server.url, token) for name, token in server.tokens.items()}
        yield server, clients, runs, job


def test_the_runs_list_shows_a_users_runs_to_them_and_their_ta_only(logged):
    _server, clients, runs, job = logged
    answer = clients["alice"].get("/api/v1/runs")
    assert answer.status_code == 200, answer.text
    listed = answer.json()
    assert listed["next_cursor"] is None
    # Newest first; the job is no run of this list.
    assert [run["id"] for run in listed["items"]] == [runs["lr-0.1"], runs["lr-0.01"]]
    newest = listed["items"][0]
    assert newest["name"] == "lr-0.1" and newest["owner"] == "alice" and newest["status"] == "succeeded"
    assert newest["experiment"]["name"] == EXPERIMENT and newest["experiment"]["id"].isdigit()
    assert newest["param_count"] == 2 and newest["metric_count"] == 2
    assert newest["metrics"] == {"accuracy": pytest.approx(0.6), "loss": pytest.approx(loss(0.1, STEPS - 1))}
    assert newest["start_time"].endswith("Z") and newest["end_time"] >= newest["start_time"]
    assert job not in answer.text and job_run_id(job) not in answer.text

    assert clients["bob"].get("/api/v1/runs").json() == {"items": [], "next_cursor": None}
    assert [run["id"] for run in clients["tara"].get("/api/v1/runs").json()["items"]] == [
        runs["lr-0.1"],
        runs["lr-0.01"],
    ]
    # Filters and pages.
    by_owner = clients["tara"].get("/api/v1/runs", params={"owner": "alice", "experiment": EXPERIMENT}).json()
    assert len(by_owner["items"]) == 2
    assert clients["tara"].get("/api/v1/runs", params={"owner": "bob"}).json()["items"] == []
    assert clients["alice"].get("/api/v1/runs", params={"experiment": "Default"}).json()["items"] == []
    first = clients["alice"].get("/api/v1/runs", params={"limit": 1}).json()
    assert [run["id"] for run in first["items"]] == [runs["lr-0.1"]] and first["next_cursor"]
    second = clients["alice"].get("/api/v1/runs", params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert [run["id"] for run in second["items"]] == [runs["lr-0.01"]] and second["next_cursor"] is None


def test_two_runs_and_a_job_side_by_side(logged):
    _server, clients, runs, job = logged
    ids = [runs["lr-0.01"], runs["lr-0.1"], job]
    answer = clients["alice"].get("/api/v1/compare", params={"ids": ",".join(ids)})
    assert answer.status_code == 200, answer.text
    comparison = answer.json()
    items = comparison["items"]
    assert [item["id"] for item in items] == ids
    assert [item["kind"] for item in items] == ["run", "run", "job"]
    assert [item["label"] for item in items] == ["lr-0.01", "lr-0.1", "job-lr-0.05"]
    assert [item["experiment"] for item in items] == [EXPERIMENT, EXPERIMENT, None]
    assert [item["status"] for item in items] == ["succeeded"] * 3
    # The runs' params as numbers where their text is one; lr differs, the optimizer does not.
    assert [item["params"].get("lr") for item in items] == [0.01, 0.1, None]
    assert [item["params"].get("optimizer") for item in items] == ["adam", "adam", None]
    assert items[2]["params"]["params.lr"] == 0.05
    assert "lr" in comparison["differ"]["params"] and "accuracy" in comparison["differ"]["metrics"]
    assert [item["metrics"]["accuracy"] for item in items] == pytest.approx([0.51, 0.6, 0.55])
    # Every loss curve by step, the runs' from their metric history, the job's from its events.
    for item, lr in zip(items, [*RATES, 0.05]):
        curve = item["series"]["loss"]
        assert curve["x"] == "step" and [x for x, _y in curve["points"]] == list(range(STEPS))
        assert [y for _x, y in curve["points"]] == pytest.approx([loss(lr, step) for step in range(STEPS)])

    # A job's MLflow run id names the job; named twice, it is one column.
    again = clients["alice"].get("/api/v1/compare", params={"ids": f"{runs['lr-0.1']},{job_run_id(job)},{job}"})
    assert [item["id"] for item in again.json()["items"]] == [runs["lr-0.1"], job]


def test_the_csv_has_a_row_per_run_and_job(logged):
    _server, clients, runs, job = logged
    ids = [runs["lr-0.01"], runs["lr-0.1"], job]
    answer = clients["alice"].get("/api/v1/compare", params={"ids": ",".join(ids), "format": "csv"})
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [row["id"] for row in rows] == ids
    assert [row["name"] for row in rows] == ["lr-0.01", "lr-0.1", "job-lr-0.05"]
    assert [row["lr"] for row in rows] == ["0.01", "0.1", ""] and rows[2]["params.lr"] == "0.05"
    assert [float(row["accuracy"]) for row in rows] == pytest.approx([0.51, 0.6, 0.55])
    assert [float(row["loss"]) for row in rows] == pytest.approx([loss(lr, STEPS - 1) for lr in (*RATES, 0.05)])


def test_another_users_run_is_the_404_an_unknown_id_gets(logged):
    server, clients, runs, job = logged
    bobs = server.run_client("bob", "import mlflow\nwith mlflow.start_run() as r: print(r.info.run_id)")
    assert bobs.returncode == 0, bobs.stderr[-3000:]
    bob_run = bobs.stdout.strip().splitlines()[-1]
    foreign = clients["bob"].get("/api/v1/compare", params={"ids": f"{bob_run},{runs['lr-0.1']}"})
    unknown_run = "f" * 32
    unknown = clients["bob"].get("/api/v1/compare", params={"ids": f"{bob_run},{unknown_run}"})
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["error"]["message"].replace(runs["lr-0.1"], "<id>") == unknown.json()["error"][
        "message"
    ].replace(unknown_run, "<id>")
    assert clients["bob"].get("/api/v1/compare", params={"ids": f"{bob_run},{job_run_id(job)}"}).status_code == 404
    assert clients["bob"].get("/api/v1/compare", params={"ids": f"{bob_run},{new_id()}"}).status_code == 404
    # The course's TA compares alice's runs and job.
    ta = clients["tara"].get("/api/v1/compare", params={"ids": f"{runs['lr-0.1']},{job}"})
    assert ta.status_code == 200 and [i["owner"] for i in ta.json()["items"]] == ["alice", "alice"]
    assert clients["tara"].get("/api/v1/compare", params={"ids": f"{bob_run},{job}"}).status_code == 404


@pytest.mark.parametrize(
    "query,field",
    [
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": f"9999999999999999999.{'a' * 32}"}, "cursor"),
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"owner": "x" * 501}, "owner"),
        ({"experiment": "a\x00b"}, "experiment"),
    ],
)
def test_bad_queries_are_422s_naming_the_parameter(logged, query, field):
    _server, clients, _runs, _job = logged
    answer = clients["alice"].get("/api/v1/runs", params=query)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["details"]["field"] == field
