"""The issue's check, for real: three students train classic models and submit them, one also
submits a predictions file; each scoring job runs on the worker's path (run_queued), each model
answering from its own process; every public and private score equals scikit-learn's on the
hidden labels of that part; the daily limit is a 429 with its reset time; a model that fails
counts, a scoring the service failed does not; the private leaderboard appears at closing; the
grades download; and no answer, event, log, job row or job file carries a label."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score
from sqlalchemy import select, update

from service.competitions.split import public_mask
from service.core import storage
from service.core.orm import Competition, CompetitionSubmission, Dataset, Job, Model
from tests.service.api.test_api_datasets_models import submit_and_run, upload
from tests.service.competitions.conftest import CLASSES, csv_bytes, multipart
from tests.support.api import assert_error

pytestmark = pytest.mark.fast

ALGORITHMS = {
    "s1": ("knn", {"n_neighbors": 7}),
    "s2": ("decision_tree", {"max_depth": 3}),
    "s3": ("logistic_regression", {}),
}


class Recorder:
    """The client, keeping every answer's body for the search for labels at the end."""

    def __init__(self, client):
        self.client, self.bodies = client, []

    def __call__(self, method: str, path: str, headers, **kwargs):
        answer = self.client.open(path, method=method, headers=headers, **kwargs)
        self.bodies.append(f"{method} {path}: " + answer.get_data(as_text=True))
        return answer


def train_model(client, headers, run_queued, train: pd.DataFrame, algorithm: str, params: dict) -> str:
    dataset = upload(client, headers, csv_bytes(train), "train.csv", target="label").get_json()["id"]
    spec = {"dataset": {"id": dataset}, "algorithm": algorithm, "params": params, "evaluation": {"cv": None}}
    job = submit_and_run(client, headers, run_queued, spec)
    assert job["status"] == "succeeded", job["error"]
    return job["result"]["model_id"]


def scoring_job(db, submission_id: str) -> str:
    with db.session() as session:
        return session.get(CompetitionSubmission, submission_id).job_id


def expected(truth: np.ndarray, predicted: np.ndarray, public: np.ndarray) -> tuple[float, float]:
    return (
        f1_score(truth[public], predicted[public], average="macro"),
        f1_score(truth[~public], predicted[~public], average="macro"),
    )


def test_a_competition_from_creation_to_grades(client, world, run_queued, db, settings):
    h, test, call = world["headers"], world["test"], Recorder(client)
    created = call("POST", "/api/v1/courses/DL-2026/competitions", h["prof"], json=world["body"])
    assert created.status_code == 201, created.get_json()
    cid = created.get_json()["id"]
    base = f"/api/v1/competitions/{cid}"
    shown = call("GET", base, h["s1"]).get_json()
    assert shown["metric"] == "macro_f1" and shown["higher_is_better"] and shown["phase"] == "public"
    assert "test" not in shown and shown["left_today"] == 2 and shown["inputs"] == ["id", "a", "b"]

    inputs = call("GET", f"{base}/test-inputs", h["s1"])
    assert inputs.mimetype == "text/csv"
    frame = pd.read_csv(io.BytesIO(inputs.data))
    assert list(frame.columns) == ["id", "a", "b"] and list(frame["id"]) == list(test["id"])

    truth = test["label"].to_numpy()
    public = public_mask(cid, list(test["id"]), 0.4)
    assert 0 < public.sum() < len(test)
    rows = test[["a", "b"]].to_numpy().tolist()
    models, want, jobs = {}, {}, []
    for student, (algorithm, params) in ALGORITHMS.items():
        models[student] = train_model(client, h[student], run_queued, world["train"], algorithm, params)
        predicted = client.post(
            f"/api/v1/models/{models[student]}/predict", headers=h[student], json={"instances": rows}
        )
        want[student] = expected(truth, np.asarray(predicted.get_json()["predictions"]), public)

    submitted = {}
    for student in ALGORITHMS:
        answer = call("POST", f"{base}/submissions", h[student], json={"model": models[student]})
        assert answer.status_code == 202, answer.get_json()
        assert answer.get_json()["status"] == "scoring" and answer.get_json()["left_today"] == 1
        submitted[student] = answer.get_json()["id"]
    # A predictions file: s3's own guesses from the inputs alone.
    guesses = np.where(test["a"] > 1.8, CLASSES[2], np.where(test["a"] > 0.6, CLASSES[1], CLASSES[0]))
    file = pd.DataFrame({"id": test["id"], "prediction": guesses}).sample(frac=1, random_state=0)
    answer = call("POST", f"{base}/submissions", h["s3"], **multipart(csv_bytes(file)))
    assert answer.status_code == 202 and answer.get_json()["left_today"] == 0, answer.get_json()
    submitted["s3-file"] = answer.get_json()["id"]
    want["s3-file"] = expected(truth, guesses, public)
    for submission_id in submitted.values():
        jobs.append(scoring_job(db, submission_id))
        assert run_queued(jobs[-1]) == "succeeded", client.get(f"/api/v1/jobs/{jobs[-1]}", headers=h["prof"]).get_json()

    # Scores: the public part's for students while open, both for staff; each is scikit-learn's.
    mine = call("GET", f"{base}/submissions", h["s3"]).get_json()
    assert {i["id"] for i in mine["items"]} == {submitted["s3"], submitted["s3-file"]} and mine["left_today"] == 0
    staff = {i["id"]: i for i in call("GET", f"{base}/submissions", h["tara"]).get_json()["items"]}
    assert len(staff) == 4
    for key, submission_id in submitted.items():
        seen = staff[submission_id]
        assert seen["status"] == "scored", seen
        assert seen["public_score"] == pytest.approx(want[key][0]) and seen["private_score"] == pytest.approx(
            want[key][1]
        )
    assert all(i["private_score"] is None and i["public_score"] is not None for i in mine["items"])

    # The daily limit: s3 used both; a 429 saying when it resets, a Retry-After header.
    refused = call("POST", f"{base}/submissions", h["s3"], json={"model": models["s3"]})
    error = assert_error(refused, 429, code="daily_limit_reached")
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert error["details"]["resets_at"] == f"{tomorrow}T00:00:00Z" and int(refused.headers["Retry-After"]) > 0
    # A bad file is a 422 naming file and costs nothing.
    bad = call("POST", f"{base}/submissions", h["s2"], **multipart(b"id,prediction\nr1000,qx-alpha\n"))
    assert_error(bad, 422, field="file")
    assert "1 missing" not in bad.get_json()["error"]["message"] and "89 missing" in bad.get_json()["error"]["message"]

    # A model that fails counts; a scoring the service failed (an admin cancelled it) does not.
    with db.session() as session:
        artifact = session.get(Model, models["s2"]).artifact_path
    with open(artifact, "wb") as broken:
        broken.write(b"not a model")
    failing = call("POST", f"{base}/submissions", h["s2"], json={"model": models["s2"]}).get_json()
    jobs.append(scoring_job(db, failing["id"]))
    assert run_queued(jobs[-1]) == "failed"
    cancelled = call("POST", f"{base}/submissions", h["s1"], json={"model": models["s1"]}).get_json()
    jobs.append(scoring_job(db, cancelled["id"]))
    assert call("POST", f"/api/v1/jobs/{jobs[-1]}/cancel", h["root"]).status_code == 202
    states = {i["id"]: i for i in call("GET", f"{base}/submissions", h["prof"]).get_json()["items"]}
    assert states[failing["id"]]["status"] == "failed" and states[failing["id"]]["counts"] is True
    assert "the model failed" in states[failing["id"]]["error"]
    assert states[cancelled["id"]]["status"] == "failed" and states[cancelled["id"]]["counts"] is False
    assert call("GET", f"{base}/submissions", h["s2"]).get_json()["left_today"] == 0
    assert call("GET", f"{base}/submissions", h["s1"]).get_json()["left_today"] == 1

    # Selections: one allowed; a failed submission cannot be chosen.
    assert call("POST", f"{base}/submissions/{submitted['s3-file']}/select", h["s3"]).status_code == 200
    assert_error(call("POST", f"{base}/submissions/{submitted['s3']}/select", h["s3"]), 409, code="too_many_selections")
    assert_error(call("POST", f"{base}/submissions/{failing['id']}/select", h["s2"]), 409)
    assert_error(call("POST", f"{base}/submissions/{submitted['s3']}/select", h["s1"]), 404)

    board = call("GET", f"{base}/leaderboard", h["s1"]).get_json()
    assert board["phase"] == "public" and board["metric"] == "macro_f1" and board["left_today"] == 1
    best_public = {"s1": want["s1"][0], "s2": want["s2"][0], "s3": max(want["s3"][0], want["s3-file"][0])}
    assert {r["user"]: r["score"] for r in board["rows"]} == pytest.approx(best_public)
    assert [r["rank"] for r in board["rows"]] == [1, 2, 3]
    assert [r["user"] for r in board["rows"]] == sorted(best_public, key=lambda u: -best_public[u])

    # Closing: the private leaderboard, of the selected submission (s3) or the best public one.
    with db.session() as session:
        session.execute(
            update(Competition).where(Competition.id == cid).values(closes_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    final = call("GET", f"{base}/leaderboard", h["s2"]).get_json()
    assert final["phase"] == "private" and final["closed"]
    assert {r["user"]: r["score"] for r in final["rows"]} == pytest.approx(
        {"s1": want["s1"][1], "s2": want["s2"][1], "s3": want["s3-file"][1]}
    )
    assert_error(
        call("POST", f"{base}/submissions", h["s1"], json={"model": models["s1"]}), 409, code="competition_closed"
    )
    assert_error(call("POST", f"{base}/submissions/{submitted['s1']}/select", h["s1"]), 409, code="competition_closed")
    assert call("GET", f"{base}/submissions", h["s1"]).get_json()["items"][-1]["private_score"] == pytest.approx(
        want["s1"][1]
    )

    grades = call("GET", f"{base}/grades.csv", h["prof"])
    assert grades.status_code == 200 and grades.mimetype == "text/csv"
    graded = pd.read_csv(io.BytesIO(grades.data))
    assert list(graded.columns) == ["user", "name", "email", "rank", "public", "private", "submissions"]
    assert list(graded["user"]) == [r["user"] for r in final["rows"]]
    assert dict(zip(graded["user"], graded["submissions"])) == {
        "s1": 1,
        "s2": 2,
        "s3": 2,
    }  # the cancelled scoring is not counted
    assert_error(call("GET", f"{base}/grades.csv", h["s1"]), 403)

    # The search: no label anywhere a student or a job's leftovers could show it.
    leftovers = list(call.bodies)
    for job_id in jobs:
        # The job's spec is written before the test set is read; it names the student's model, whose
        # classes (the training set's, which students hold) it carries: all but the spec is searched.
        shown = client.get(f"/api/v1/jobs/{job_id}", headers=h["prof"]).get_json()
        leftovers.append(json.dumps({key: value for key, value in shown.items() if key != "spec"}))
        for path in (f"/api/v1/jobs/{job_id}/events", f"/api/v1/jobs/{job_id}/log"):
            answer = client.get(path, headers=h["prof"])
            assert answer.status_code == 200, path
            leftovers.append(answer.get_data(as_text=True))
        folder = storage.job_dir(settings, job_id)
        leftovers += [p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file()]
    with db.session() as session:
        rows = session.scalars(select(Job).where(Job.id.in_(jobs))).all()
        leftovers += [f"{row.result} {row.error} {row.metrics} {row.progress}" for row in rows]
    assert len(jobs) == 6 and any("scoring 90 test rows" in text for text in leftovers)
    assert [text[:200] for text in leftovers if any(label in text for label in CLASSES)] == []


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x01\x02binary",
        b"\xff\xfe not utf-8",
        b"id,guess\nr1000,qx-alpha\n",
        b"prediction\nqx-alpha\n",
        b'id,prediction\n"unclosed,qx-alpha\n',
    ],
)
def test_a_bad_predictions_file_is_a_422_naming_file_and_costs_nothing(client, world, data):
    h = world["headers"]
    cid = client.post("/api/v1/courses/DL-2026/competitions", headers=h["prof"], json=world["body"]).get_json()["id"]
    answer = client.post(f"/api/v1/competitions/{cid}/submissions", headers=h["s1"], **multipart(data))
    assert_error(answer, 422, field="file")
    assert client.get(f"/api/v1/competitions/{cid}/submissions", headers=h["s1"]).get_json()["left_today"] == 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"metric": "rmse"}, "metric"),  # the labels are text
        ({"target": "nope"}, "target"),
        ({"test": "0" * 22}, "test"),
        ({"train": {"course": "DL-2026", "name": "nope"}}, "train"),
        ({"closes_at": "2001-01-01T00:00:00Z"}, "closes_at"),
        ({"closes_at": "soon"}, "closes_at"),
        ({"public_fraction": 1}, "public_fraction"),
    ],
)
def test_a_bad_competition_is_refused_naming_the_field(client, world, change, field):
    answer = client.post(
        "/api/v1/courses/DL-2026/competitions", headers=world["headers"]["prof"], json={**world["body"], **change}
    )
    assert answer.status_code in (404, 422), answer.get_json()
    assert answer.get_json()["error"]["details"]["field"] == field


def test_test_inputs_whose_file_was_removed_are_a_409_not_a_500(client, world, db):
    h = world["headers"]
    cid = client.post("/api/v1/courses/DL-2026/competitions", headers=h["prof"], json=world["body"]).get_json()["id"]
    inputs = client.get(f"/api/v1/competitions/{cid}/test-inputs", headers=h["s1"])
    assert inputs.status_code == 200 and "qx-" not in inputs.get_data(as_text=True)
    with db.session() as session:
        test_set = session.get(Dataset, session.get(Competition, cid).test_dataset_id)
        Path(test_set.path).unlink()
    assert_error(client.get(f"/api/v1/competitions/{cid}/test-inputs", headers=h["s1"]), 409, code="test_set_removed")
