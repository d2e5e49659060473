"""A competition world: DL-2026 (prof instructs, tara assists, s1..s3 study), a course training
set, and a hidden test set whose labels are searchable strings no answer may carry."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select, update

from service.core.orm import Course, Dataset
from tests.service.api.test_api_datasets_models import upload

CLASSES = ["qx-alpha", "qx-beta", "qx-gamma"]
STUDENTS = ("s1", "s2", "s3")


def table(rows: int, seed: int, with_id: bool) -> pd.DataFrame:
    """Three overlapping clusters: the models get most rows right, not all."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, rows)
    frame = pd.DataFrame(
        {"a": label * 1.2 + rng.normal(0, 0.9, rows), "b": -label * 0.8 + rng.normal(0, 0.9, rows)}
    ).round(4)
    frame["label"] = [CLASSES[i] for i in label]
    if with_id:
        frame.insert(0, "id", [f"r{1000 + i}" for i in range(rows)])
    return frame


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


@pytest.fixture
def world(client, make_user, db):
    """Headers by user name, the train and test frames, the competition's create body."""
    root = make_user("root", admin=True)
    headers = {"root": root, "prof": make_user("prof"), "tara": make_user("tara"), "bob": make_user("bob")}
    for name in STUDENTS:
        headers[name] = make_user(name)
    created = client.post(
        "/api/v1/courses",
        headers=root,
        json={"name": "DL-2026", "term_end": "2099-01-31", "instructors": ["prof"]},
    )
    assert created.status_code == 201, created.get_json()
    for user, role in (("tara", "ta"), *((s, "student") for s in STUDENTS)):
        answer = client.put(f"/api/v1/courses/DL-2026/members/{user}", headers=root, json={"role": role})
        assert answer.status_code == 200, answer.get_json()
    train, test = table(240, 1, with_id=False), table(90, 2, with_id=True)
    published = upload(client, headers["prof"], csv_bytes(train), "aicup-train.csv", target="label", name="aicup-train")
    hidden = upload(client, headers["prof"], csv_bytes(test), "aicup-test.csv", target="label")
    assert published.status_code == hidden.status_code == 201
    with db.session() as session:  # published to the course, as a course data set is
        course_id = session.scalar(select(Course.id).where(Course.name == "DL-2026"))
        session.execute(update(Dataset).where(Dataset.id == published.get_json()["id"]).values(course_id=course_id))
    body = {
        "name": "aicup",
        "metric": "macro_f1",
        "train": {"course": "DL-2026", "name": "aicup-train"},
        "test": hidden.get_json()["id"],
        "target": "label",
        "public_fraction": 0.4,
        "daily_limit": 2,
        "final_selections": 1,
        "closes_at": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
    }
    return {"headers": headers, "train": train, "test": test, "body": body}


def multipart(data: bytes, name: str = "predictions.csv") -> dict:
    return {"data": {"file": (io.BytesIO(data), name)}, "content_type": "multipart/form-data"}
