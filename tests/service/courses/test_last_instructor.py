"""A course keeps at least one instructor: taking the last one's role (alone, or with every
role) is a 409 naming `role` that says to add another instructor first."""

from __future__ import annotations

import pytest

from tests.support.api import assert_error

pytestmark = pytest.mark.fast


def roles(client, headers) -> dict[str, list[str]]:
    members = client.get("/api/v1/courses/DL-2026", headers=headers).get_json()["members"]
    found: dict[str, list[str]] = {}
    for member in members:
        found.setdefault(member["user"], []).append(member["role"])
    return found


def test_the_last_instructor_stays_until_another_is_added(client, course, root, make_user):
    prof = course["prof"]
    for query in ("?role=instructor", ""):
        error = assert_error(
            client.delete(f"/api/v1/courses/DL-2026/members/prof{query}", headers=root),
            409,
            field="role",
            code="last_instructor",
        )
        assert "add another instructor first" in error["message"]
    assert roles(client, root)["prof"] == ["instructor"]
    # Another role of theirs may go; so may the last instructor once there is a second.
    assert client.put("/api/v1/courses/DL-2026/members/prof", headers=prof, json={"role": "ta"}).status_code == 200
    assert client.delete("/api/v1/courses/DL-2026/members/prof?role=ta", headers=prof).status_code == 200
    make_user("ivy")
    assert (
        client.put("/api/v1/courses/DL-2026/members/ivy", headers=prof, json={"role": "instructor"}).status_code == 200
    )
    assert client.delete("/api/v1/courses/DL-2026/members/prof?role=instructor", headers=prof).status_code == 200
    assert "prof" not in roles(client, root) and roles(client, root)["ivy"] == ["instructor"]
    assert_error(client.delete("/api/v1/courses/DL-2026/members/ivy", headers=root), 409, code="last_instructor")
