"""A course set up through the API: DL-2026, taught by prof, assisted by tara."""

from __future__ import annotations

import pytest


@pytest.fixture
def root(make_user):
    return make_user("root", admin=True)


@pytest.fixture
def course(client, make_user, root):
    """The staff's headers, with DL-2026 made for them."""
    staff = {"prof": make_user("prof"), "tara": make_user("tara")}
    answer = client.post(
        "/api/v1/courses",
        headers=root,
        json={"name": "DL-2026", "term_end": "2099-01-31", "instructors": ["prof"], "budget": {"gpu_hours": 10}},
    )
    assert answer.status_code == 201, answer.get_json()
    assert (
        client.put("/api/v1/courses/DL-2026/members/tara", headers=staff["prof"], json={"role": "ta"}).status_code
        == 200
    )
    return staff
