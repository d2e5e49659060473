"""A search's trials are jobs of its course: its staff see them, and the best model."""

from __future__ import annotations

import pytest

from tests.service.search.test_search import KNN_SEARCH, drive  # noqa: F401 (a fixture)

pytestmark = pytest.mark.fast


def test_a_searchs_trials_inherit_its_course(client, root, make_user, course, drive):  # noqa: F811
    alice = make_user("alice")
    client.put("/api/v1/courses/DL-2026/members/alice", headers=root, json={"role": "student"})
    search = client.post("/api/v1/jobs", json={**KNN_SEARCH, "course": "DL-2026"}, headers=alice).get_json()
    assert search["course"] == "DL-2026"
    drive(search["id"])
    trials = client.get(f"/api/v1/jobs?parent={search['id']}", headers=course["tara"]).get_json()["items"]
    assert len(trials) == 6 and {t["course"] for t in trials} == {"DL-2026"}
    done = client.get(f"/api/v1/jobs/{search['id']}", headers=course["tara"]).get_json()
    model = client.get(f"/api/v1/models/{done['result']['model_id']}", headers=course["prof"])
    assert model.status_code == 200
    predicted = client.post(
        f"/api/v1/models/{search['id']}/predict", headers=course["prof"], json={"instances": [[5.1, 3.5, 1.4, 0.2]]}
    )
    assert predicted.status_code == 200 and predicted.get_json()["predictions"] == [0]
