"""Uploading data sets, training on them, and using the models (PostgreSQL + Redis)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from sklearn.datasets import load_iris

from tests.support.api import IRIS_KNN, assert_error

pytestmark = pytest.mark.fast  # the fast tier: no servers needed (tests/conftest.py)

CSV = (
    "colour,size,weight,label\n"
    + "\n".join(
        f"{c},{s},{w},{'big' if s > 5 else 'small'}"
        for c, s, w in zip(["red", "green", "blue", "red"] * 10, range(40), np.linspace(1, 9, 40))
    )
).encode()


def upload(client, headers, data: bytes, filename="data.csv", **form):
    return client.post(
        "/api/v1/datasets",
        headers=headers,
        content_type="multipart/form-data",
        data={"file": (io.BytesIO(data), filename), **form},
    )


def submit_and_run(client, headers, run_queued, spec):
    job = client.post("/api/v1/jobs", json=spec, headers=headers)
    assert job.status_code == 201, job.get_json()
    run_queued(job.get_json()["id"])
    return client.get(f"/api/v1/jobs/{job.get_json()['id']}", headers=headers).get_json()


def test_train_and_predict_on_iris(client, alice, run_queued):
    job = submit_and_run(client, alice, run_queued, IRIS_KNN)
    assert job["status"] == "succeeded", job["error"]
    assert job["started_at"] and job["finished_at"] and job["attempt"] == 1
    assert job["metrics"]["accuracy"] > 0.9 and len(job["metrics"]["cv"]["folds"]) == 5
    model_id = job["result"]["model_id"]

    model = client.get(f"/api/v1/models/{model_id}", headers=alice).get_json()
    assert model["job_id"] == job["id"] and model["framework"] == "sklearn" and model["algorithm"] == "knn"
    assert model["input"]["features"] == load_iris().feature_names
    assert model["classes"] == [0, 1, 2] and model["class_names"] == ["setosa", "versicolor", "virginica"]

    X, y = load_iris(return_X_y=True)
    rows = X[[0, 60, 120]].tolist()
    answer = client.post(f"/api/v1/models/{model_id}/predict", json={"instances": rows}, headers=alice).get_json()
    assert answer["predictions"] == y[[0, 60, 120]].tolist()
    assert answer["labels"] == ["setosa", "versicolor", "virginica"]
    assert np.allclose(np.sum(answer["probabilities"], axis=1), 1)
    # Rows keyed by feature name work too.
    named = [dict(zip(model["input"]["features"], rows[0]))]
    assert client.post(f"/api/v1/models/{model_id}/predict", json={"instances": named}, headers=alice).get_json()[
        "predictions"
    ] == [0]

    events = client.get(f"/api/v1/jobs/{job['id']}/events", headers=alice).get_json()["items"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    statuses = [e["data"]["status"] for e in events if e["type"] == "status"]
    assert statuses == ["queued", "running", "succeeded"]
    later = client.get(f"/api/v1/jobs/{job['id']}/events?after=2", headers=alice).get_json()["items"]
    assert [e["seq"] for e in later] == list(range(3, len(events) + 1))
    log = client.get(f"/api/v1/jobs/{job['id']}/log", headers=alice).get_data(as_text=True)
    assert "fold 5/5" in log and "succeeded" in log

    download = client.get(f"/api/v1/models/{model_id}/download", headers=alice)
    assert download.status_code == 200 and download.data[:2] == b"PK"  # a skops zip archive
    assert [m["id"] for m in client.get("/api/v1/models", headers=alice).get_json()["items"]] == [model_id]


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"instances": [[5.1, 3.5, 1.4]]}, "instances.0"),
        ({"instances": [[5.1, 3.5, 1.4, 0.2, 9.9]]}, "instances.0"),
        ({"instances": [[5.1, 3.5, "wide", 0.2]]}, "instances.0.2"),
        ({"instances": [[5.1, 3.5, True, 0.2]]}, "instances.0.2"),
        ({"instances": [[5.1, 3.5, None, 0.2]]}, "instances"),  # trained without imputation
        ({"instances": []}, "instances"),
        ({"instances": "5.1,3.5"}, "instances"),
        ({"instances": [5.1]}, "instances.0"),
        ({"instances": [{"petal": 1}]}, "instances.0"),
        ({"rows": [[1, 2, 3, 4]]}, "instances"),
    ],
)
def test_bad_prediction_requests_are_422(client, alice, run_queued, payload, field):
    model_id = submit_and_run(client, alice, run_queued, IRIS_KNN)["result"]["model_id"]
    error = assert_error(client.post(f"/api/v1/models/{model_id}/predict", json=payload, headers=alice), 422, field)
    if payload.get("instances") and isinstance(payload["instances"][0], list) and len(payload["instances"][0]) != 4:
        assert "the model expects 4" in error["message"]


def test_wrong_feature_count_message_says_how_many(client, alice, run_queued):
    model_id = submit_and_run(client, alice, run_queued, IRIS_KNN)["result"]["model_id"]
    error = assert_error(
        client.post(f"/api/v1/models/{model_id}/predict", json={"instances": [[1, 2]]}, headers=alice),
        422,
        "instances.0",
    )
    assert error["details"]["expected"] == 4 and error["details"]["got"] == 2


def test_models_of_other_users_and_unknown_ids_are_404(client, alice, bob, run_queued):
    job = submit_and_run(client, alice, run_queued, IRIS_KNN)
    model_id = job["result"]["model_id"]
    for path in (f"/api/v1/models/{model_id}", f"/api/v1/models/{model_id}/download", "/api/v1/models/nope"):
        assert_error(client.get(path, headers=bob), 404)
    assert_error(
        client.post(f"/api/v1/models/{model_id}/predict", json={"instances": [[1, 2, 3, 4]]}, headers=bob), 404
    )
    assert_error(
        client.post(f"/api/v1/models/{job['id']}/predict", json={"instances": [[1, 2, 3, 4]]}, headers=bob), 404
    )
    assert client.get("/api/v1/models", headers=bob).get_json()["items"] == []


def test_a_job_without_a_model_is_409(client, alice, run_queued, settings):
    # Specs are checked at submit time, so make the job fail at run time: its data file is gone.
    dataset = upload(client, alice, CSV, target="label").get_json()
    job = client.post(
        "/api/v1/jobs", json={"dataset": {"id": dataset["id"]}, "algorithm": "knn"}, headers=alice
    ).get_json()
    (settings.artifact_dir / "datasets" / f"{dataset['id']}.csv").unlink()
    run_queued(job["id"])
    job = client.get(f"/api/v1/jobs/{job['id']}", headers=alice).get_json()
    assert job["status"] == "failed" and job["finished_at"]
    assert job["error"]["code"] == "training_error" and "No such file" in job["error"]["message"]
    assert "Traceback" not in job["error"]["message"]
    log = client.get(f"/api/v1/jobs/{job['id']}/log", headers=alice).get_data(as_text=True)
    assert "Traceback (most recent call last)" in log
    error = assert_error(
        client.post(f"/api/v1/models/{job['id']}/predict", json={"instances": [[1, 2, 3, 4]]}, headers=alice),
        409,
        code="wrong_state",
    )
    assert "failed" in error["message"]
    queued = client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).get_json()
    assert_error(client.get(f"/api/v1/models/{queued['id']}", headers=alice), 409)


def test_csv_upload_train_and_predict_with_categorical_features(client, alice, bob, run_queued):
    response = upload(client, alice, CSV, target="label", name="sizes")
    assert response.status_code == 201, response.get_json()
    dataset = response.get_json()
    assert dataset["rows"] == 40 and dataset["name"] == "sizes" and dataset["target"] == "label"
    kinds = {c["name"]: c["kind"] for c in dataset["columns"]}
    assert kinds == {"colour": "categorical", "size": "numeric", "weight": "numeric", "label": "categorical"}

    listed = client.get("/api/v1/datasets", headers=alice).get_json()["items"]
    assert {"iris", "wine", "breast_cancer", "digits", "diabetes", dataset["id"]} <= {d["id"] for d in listed}
    assert dataset["id"] not in {d["id"] for d in client.get("/api/v1/datasets", headers=bob).get_json()["items"]}
    assert_error(client.get(f"/api/v1/datasets/{dataset['id']}", headers=bob), 404)
    assert_error(
        client.post("/api/v1/jobs", json={"dataset": {"id": dataset["id"]}, "algorithm": "knn"}, headers=bob),
        404,
        "dataset.id",
        "not_found",
    )

    spec = {
        "dataset": {"id": dataset["id"]},
        "algorithm": "random_forest",
        "params": {"n_estimators": 10},
        "preprocessing": {"scale": True},
    }
    job = submit_and_run(client, alice, run_queued, spec)
    assert job["status"] == "succeeded", job["error"]
    assert job["spec"]["task"] == "classification" and job["spec"]["dataset"]["target"] == "label"
    model_id = job["result"]["model_id"]
    answer = client.post(
        f"/api/v1/models/{model_id}/predict",
        headers=alice,
        json={"instances": [["red", 30, 5.0], {"colour": "blue", "size": 1, "weight": 2.0}]},
    )
    assert answer.get_json()["predictions"] == ["big", "small"]

    regression = submit_and_run(
        client,
        alice,
        run_queued,
        {"dataset": {"id": dataset["id"], "target": "weight"}, "algorithm": "linear_regression"},
    )
    assert regression["status"] == "succeeded" and regression["metrics"]["r2"] > 0.9


@pytest.mark.parametrize(
    "data,filename,field",
    [
        (b"", "empty.csv", "file"),
        (b"   \n", "blank.csv", "file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "digit.csv", "file"),
        (b"a,b\n1,2\n", "one-row.csv", "file"),
        (b"a,b\n1,2\n3,4\n", "data.xlsx", "file"),
        ("a,b\n\u00e9,2\n3,4\n".encode("latin-1"), "latin.csv", "file"),
        (b"a,,c\n1,2,3\n4,5,6\n", "noname.csv", "file"),
        (b"a,a\n1,2\n3,4\n", "dupe.csv", "file"),
        (b'a,b\n1,"2\n3,4\n', "quote.csv", "file"),
    ],
)
def test_bad_uploads_are_422(client, alice, data, filename, field):
    assert_error(upload(client, alice, data, filename), 422, field)
    assert [d for d in client.get("/api/v1/datasets", headers=alice).get_json()["items"] if not d["builtin"]] == []


def test_upload_checks_the_target_and_the_size(client, alice):
    assert_error(upload(client, alice, CSV, target="price"), 422, "target")
    assert_error(
        client.post("/api/v1/datasets", headers=alice, data={"name": "x"}, content_type="multipart/form-data"),
        422,
        "file",
    )
    big = b"a,b\n" + b"1,2\n" * 600_000  # over the 2 MB limit these tests set
    assert_error(upload(client, alice, big), 413, "file", "too_large")


def test_spec_checks_against_an_uploaded_table(client, alice):
    gaps = b"x,y,label\n1,2,a\n,3,b\n4,5,a\n6,,b\n7,8,a\n9,1,b\n2,2,a\n3,3,b\n"
    dataset = upload(client, alice, gaps, target="label").get_json()
    assert_error(
        client.post(
            "/api/v1/jobs",
            json={"dataset": {"id": dataset["id"]}, "algorithm": "knn", "params": {"n_neighbors": 2}},
            headers=alice,
        ),
        422,
        "preprocessing.impute",
    )
    ok = client.post(
        "/api/v1/jobs",
        json={
            "dataset": {"id": dataset["id"]},
            "algorithm": "knn",
            "params": {"n_neighbors": 2},
            "preprocessing": {"impute": "mean"},
            "evaluation": {"test_size": 0.25},
        },
        headers=alice,
    )
    assert ok.status_code == 201, ok.get_json()
    assert_error(
        client.post(
            "/api/v1/jobs", json={"dataset": {"id": dataset["id"], "target": "nope"}, "algorithm": "knn"}, headers=alice
        ),
        422,
        "dataset.target",
    )
    assert_error(
        client.post(
            "/api/v1/jobs",
            json={
                "dataset": {"id": dataset["id"]},
                "algorithm": "svm",
                "task": "regression",
                "preprocessing": {"impute": "mean"},
            },
            headers=alice,
        ),
        422,
        "task",
    )
    no_target = upload(client, alice, b"x,y\n1,2\n3,4\n5,6\n").get_json()
    assert_error(
        client.post("/api/v1/jobs", json={"dataset": {"id": no_target["id"]}, "algorithm": "knn"}, headers=alice),
        422,
        "dataset.target",
    )
    clusters = client.post(
        "/api/v1/jobs",
        json={"dataset": {"id": no_target["id"]}, "algorithm": "kmeans", "params": {"n_clusters": 2}},
        headers=alice,
    )
    assert clusters.status_code == 201


@pytest.mark.parametrize(
    "algorithm,dataset",
    [
        ("knn", "iris"),
        ("knn", "diabetes"),
        ("kmeans", "wine"),
        ("decision_tree", "breast_cancer"),
        ("decision_tree", "diabetes"),
        ("random_forest", "digits"),
        ("random_forest", "diabetes"),
        ("svm", "wine"),
        ("svm", "diabetes"),
        ("pca", "digits"),
        ("linear_regression", "diabetes"),
        ("logistic_regression", "iris"),
    ],
)
def test_every_algorithm_trains_and_predicts_with_its_defaults(client, alice, run_queued, algorithm, dataset):
    from sklearn import datasets

    job = submit_and_run(
        client, alice, run_queued, {"dataset": dataset, "algorithm": algorithm, "preprocessing": {"scale": True}}
    )
    assert job["status"] == "succeeded", job["error"]
    X, _ = getattr(datasets, f"load_{dataset}")(return_X_y=True)
    answer = client.post(
        f"/api/v1/models/{job['result']['model_id']}/predict", headers=alice, json={"instances": X[:3].tolist()}
    ).get_json()
    assert len(answer["predictions"]) == 3
    task = job["spec"]["task"]
    expected_metric = {
        "classification": "f1_macro",
        "regression": "rmse",
        "clustering": "silhouette",
        "decomposition": "explained_variance_ratio",
    }[task]
    assert expected_metric in job["metrics"]
