"""A course's roster: 60 students from a CSV, each with a working token stored only as a hash,
each submitting a job; students see their own, the staff see all of them."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from service.core.orm import User
from service.lab.users import hash_token
from tests.support.api import IRIS_KNN, assert_error

pytestmark = pytest.mark.fast

STUDENTS = [(f"s{i:03d}", f"Student {i}", f"s{i:03d}@example.org") for i in range(60)]


def roster_csv(rows) -> bytes:
    return ("id,name,email\n" + "".join(f"{i},{n},{e}\n" for i, n, e in rows)).encode()


def upload_roster(client, headers, data: bytes, course: str = "DL-2026"):
    return client.post(
        f"/api/v1/courses/{course}/roster",
        headers=headers,
        data={"file": (io.BytesIO(data), "roster.csv")},
        content_type="multipart/form-data",
    )


def test_sixty_students_each_see_their_own_job_and_the_staff_see_all(client, db, course, make_user, root):
    answer = upload_roster(client, course["prof"], roster_csv(STUDENTS))
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    tokens = {entry["id"]: entry["token"] for entry in body["created"]}
    assert sorted(tokens) == [s[0] for s in STUDENTS] and body["enrolled"] == [s[0] for s in STUDENTS]

    with db.session() as session:  # the tokens are stored hashed, and nowhere in clear
        users = {u.name: u for u in session.scalars(select(User).where(User.name.in_(list(tokens))))}
        assert all(users[name].token_hash == hash_token(token) != token for name, token in tokens.items())
        assert users["s007"].full_name == "Student 7" and users["s007"].email == "s007@example.org"

    job_ids = {}
    for name, token in tokens.items():
        headers = {"Authorization": f"Bearer {token}"}
        submitted = client.post("/api/v1/jobs", json=IRIS_KNN, headers=headers)
        assert submitted.status_code == 201, submitted.get_json()
        assert submitted.get_json()["course"] == "DL-2026"  # their only course
        job_ids[name] = submitted.get_json()["id"]
    for name, token in tokens.items():
        items = client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"}).get_json()["items"]
        assert [job["id"] for job in items] == [job_ids[name]]

    for staff in ("prof", "tara"):
        listed = client.get("/api/v1/jobs?limit=500&course=DL-2026", headers=course[staff]).get_json()["items"]
        assert {job["id"] for job in listed} == set(job_ids.values())
        one = client.get(f"/api/v1/jobs/{job_ids['s042']}", headers=course[staff]).get_json()
        assert one["owner"] == "s042"

    client.post("/api/v1/courses", headers=root, json={"name": "ML-2026", "term_end": "2099-01-31"})
    again = upload_roster(client, root, roster_csv([("oscar", "Oscar", "")]), "ML-2026").get_json()
    oscar = {"Authorization": f"Bearer {again['created'][0]['token']}"}
    assert client.get("/api/v1/jobs", headers=oscar).get_json()["items"] == []
    assert client.get(f"/api/v1/jobs/{job_ids['s001']}", headers=oscar).status_code == 404


def test_a_roster_enrols_existing_users_and_creates_only_the_missing(client, course, make_user):
    make_user("ada")
    body = client.post(
        "/api/v1/courses/DL-2026/roster",
        headers=course["prof"],
        json={"students": [{"id": "ada"}, {"id": "bea", "name": "Bea", "email": "bea@example.org"}]},
    ).get_json()
    assert [entry["id"] for entry in body["created"]] == ["bea"] and body["enrolled"] == ["ada", "bea"]
    # Twice is harmless: nobody is created again, and no token is shown again.
    again = client.post("/api/v1/courses/DL-2026/roster", headers=course["prof"], json={"students": [{"id": "bea"}]})
    assert again.get_json() == {"created": [], "enrolled": ["bea"]}


@pytest.mark.parametrize(
    ("data", "row", "column"),
    [
        (b"id,name,email\ns1,A,a@x\nbad id!,B,b@x\n", 3, "id"),
        (b"id,name,email\ns1,A,a@x\ns1,B,b@x\n", 3, "id"),
        (b"id,name,email\ns1,A,a@x\n\ns1,B,b@x\n", 4, "id"),  # a blank line still counts as a row
        (b"id,name,email\ns1,A\n", 2, "id"),
        (b"id,name,email\ns1,A," + b"x" * 300 + b"\n", 2, "email"),
    ],
)
def test_a_bad_row_is_a_422_naming_its_row_and_column(client, course, data, row, column):
    answer = upload_roster(client, course["prof"], data)
    assert_error(answer, 422, field="file")
    assert answer.get_json()["error"]["details"]["row"] == row
    assert answer.get_json()["error"]["details"]["column"] == column


def test_a_roster_is_bounded(client, course):
    rows = [(f"u{i}", "", "") for i in range(2001)]
    answer = upload_roster(client, course["prof"], roster_csv(rows))
    assert_error(answer, 422, field="file")
    assert "at most 2000" in answer.get_json()["error"]["message"]
    assert_error(upload_roster(client, course["prof"], b"name,id\n"), 422, field="file")


def test_a_student_named_twice_in_a_json_roster_is_a_422_naming_the_entry(client, course):
    students = [{"id": "s1", "name": "A", "email": None}, {"id": "s2"}, {"id": "s1"}]
    answer = client.post("/api/v1/courses/DL-2026/roster", headers=course["prof"], json={"students": students})
    error = assert_error(answer, 422, field="students.2.id")
    assert "'s1' appears twice" in error["message"]
