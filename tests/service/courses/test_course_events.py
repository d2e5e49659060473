"""The jobs stream (GET /api/v1/events) shows a course's jobs to its staff, not to its students."""

from __future__ import annotations

import pytest

from tests.service.api.test_events_stream import parse
from tests.support.api import IRIS_KNN

pytestmark = pytest.mark.fast


def test_the_jobs_stream_shows_course_jobs_to_the_staff(client, root, make_user, course):
    students = {name: make_user(name) for name in ("alice", "sam")}
    for name in students:
        client.put(f"/api/v1/courses/DL-2026/members/{name}", headers=root, json={"role": "student"})
    job_id = client.post("/api/v1/jobs", json=IRIS_KNN, headers=students["alice"]).get_json()["id"]

    def streamed(headers) -> list[str]:
        text = client.get("/api/v1/events", headers=headers).get_data(as_text=True)  # the state now, then it ends
        return [event["data"]["id"] for event in parse(text)]

    assert streamed(course["prof"]) == streamed(course["tara"]) == streamed(students["alice"]) == [job_id]
    assert streamed(students["sam"]) == []
