"""A job's course: the one named, else the caller's only course; several without a name, a
course one is not in, and a closed course are refused, naming `course`."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from service.core.orm import Course, Job, utcnow
from tests.support.api import IRIS_KNN, assert_error

pytestmark = pytest.mark.fast


def make_course(client, root, name: str, term_end: str = "2099-01-31"):
    answer = client.post("/api/v1/courses", headers=root, json={"name": name, "term_end": term_end})
    assert answer.status_code == 201, answer.get_json()


def enrol(client, root, course: str, user: str, role: str = "student"):
    assert client.put(f"/api/v1/courses/{course}/members/{user}", headers=root, json={"role": role}).status_code == 200


def test_a_user_in_no_course_submits_jobs_of_no_course(client, alice):
    answer = client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice)
    assert answer.status_code == 201 and answer.get_json()["course"] is None


def test_the_only_course_is_the_default_and_several_need_a_name(client, root, alice):
    make_course(client, root, "DL-2026")
    enrol(client, root, "DL-2026", "alice")
    assert client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).get_json()["course"] == "DL-2026"

    make_course(client, root, "ML-2026")
    enrol(client, root, "ML-2026", "alice", "ta")  # any role counts
    error = assert_error(client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice), 422, field="course")
    assert error["details"]["courses"] == ["DL-2026", "ML-2026"] and "DL-2026, ML-2026" in error["message"]
    named = client.post("/api/v1/jobs", json={**IRIS_KNN, "course": "ML-2026"}, headers=alice)
    assert named.status_code == 201 and named.get_json()["course"] == "ML-2026"
    assert "course" not in named.get_json()["spec"]
    ml = client.get("/api/v1/jobs?course=ML-2026", headers=alice).get_json()["items"]
    assert [job["id"] for job in ml] == [named.get_json()["id"]]


def test_a_course_one_is_not_in_answers_like_one_that_does_not_exist(client, root, alice):
    make_course(client, root, "DL-2026")
    answers = [
        client.post("/api/v1/jobs", json={**IRIS_KNN, "course": name}, headers=alice) for name in ("DL-2026", "NOPE")
    ]
    messages = [
        assert_error(a, 422, field="course")["message"].replace(n, "<name>")
        for a, n in zip(answers, ("DL-2026", "NOPE"), strict=True)
    ]
    assert messages[0] == messages[1]
    assert_error(client.post("/api/v1/jobs", json={**IRIS_KNN, "course": 7}, headers=alice), 422, field="course")
    assert_error(client.get("/api/v1/jobs?course=DL-2026", headers=alice), 422, field="course")


def test_a_closed_course_takes_no_new_jobs(client, root, alice):
    make_course(client, root, "OLD-2020", "2020-06-30")
    enrol(client, root, "OLD-2020", "alice")
    error = assert_error(client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice), 409, field="course")
    assert "closed on 2020-06-30" in error["message"]
    assert client.patch("/api/v1/courses/OLD-2020", headers=root, json={"term_end": "2099-01-01"}).status_code == 200
    assert client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).status_code == 201


def test_me_shows_roles_budget_used_and_left(client, root, alice):
    created = client.post(
        "/api/v1/courses",
        headers=root,
        json={"name": "DL-2026", "term_end": "2099-01-31", "budget": {"gpu_hours": 10, "cpu_hours": 5}},
    )
    assert created.status_code == 201
    enrol(client, root, "DL-2026", "alice")
    enrol(client, root, "DL-2026", "alice", "ta")
    me = client.get("/api/v1/me", headers=alice).get_json()
    assert me["user"] == "alice" and me["admin"] is False
    (course,) = me["courses"]
    assert course["role"] == "ta" and course["roles"] == ["student", "ta"]
    assert course["used"] == {"gpu_hours": 0.0, "cpu_hours": 0.0}
    assert course["left"] == {"gpu_hours": 10.0, "cpu_hours": 5.0}


def test_course_creation_rules(client, root, alice):
    body = {"name": "DL-2026", "term_end": "2099-01-31", "instructors": ["nobody"]}
    assert_error(client.post("/api/v1/courses", headers=root, json=body), 422, field="instructors")
    assert_error(client.post("/api/v1/courses", headers=alice, json=body), 403, code="forbidden")
    assert_error(client.post("/api/v1/courses", headers=root, json={**body, "name": "bad name"}), 422, field="name")
    assert_error(client.post("/api/v1/courses", headers=root, json={**body, "share": 0}), 422, field="share")
    assert_error(client.post("/api/v1/courses", headers=root, json={**body, "term_end": "soon"}), 422, field="term_end")
    good = {**body, "instructors": ["alice"]}
    assert client.post("/api/v1/courses", headers=root, json=good).status_code == 201
    assert_error(client.post("/api/v1/courses", headers=root, json=good), 409, field="name")
    listed = client.get("/api/v1/courses", headers=alice).get_json()["items"]
    assert [(c["name"], c["role"], c["budget"], c["share"]) for c in listed] == [("DL-2026", "instructor", None, 1.0)]


def test_me_counts_the_run_time_of_the_jobs_in_the_course(client, root, alice, db):
    """Usage is run time, as `labtrain admin usage` counts it: a finished run in full, a job put
    back in the queue (its worker lost) not up to now."""
    make_course(client, root, "DL-2026")
    enrol(client, root, "DL-2026", "alice")
    finished, requeued = (client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).get_json()["id"] for _ in "ab")
    now = utcnow()
    with db.session() as session:
        session.execute(update(Course).values(created_at=now - timedelta(hours=3)))
        session.execute(
            update(Job)
            .where(Job.id == finished)
            .values(status="succeeded", started_at=now - timedelta(minutes=90), finished_at=now - timedelta(hours=1))
        )
        session.execute(update(Job).where(Job.id == requeued).values(started_at=now - timedelta(hours=2)))
    (course,) = client.get("/api/v1/me", headers=alice).get_json()["courses"]
    assert course["used"] == {"gpu_hours": 0.0, "cpu_hours": 0.5}
