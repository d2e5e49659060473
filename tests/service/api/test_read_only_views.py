"""The views a client or the dashboard asks again and again, and that only read (`reads_only`), open
no transaction on PostgreSQL: each of their statements, the token's look-up included, runs alone
(no BEGIN or ROLLBACK a round trip each). A write from one would be refused (Database.reads)."""

from __future__ import annotations

import pytest
from sqlalchemy import event

SPEC = {"dataset": "iris", "algorithm": "knn", "params": {"n_neighbors": 3}}


def test_the_polled_reads_open_no_transaction(app, client, alice, run_queued, settings):
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("SQLite begins no transaction for a read")
    job = client.post("/api/v1/jobs", json=SPEC, headers=alice).get_json()
    assert run_queued(job["id"]) == "succeeded"
    model = client.get(f"/api/v1/jobs/{job['id']}", headers=alice).get_json()["result"]["model_id"]
    paths = [
        f"/api/v1/jobs/{job['id']}",
        "/api/v1/jobs",
        f"/api/v1/jobs/{job['id']}/log",
        f"/api/v1/jobs/{job['id']}/artifacts",
        "/api/v1/models",
        f"/api/v1/models/{model}",
        "/api/v1/datasets",
        "/api/v1/datasets/iris",
        "/api/v1/sources",
    ]
    engine = app.extensions["labtrain"].db.engine
    seen: list[tuple[str, bool]] = []

    def note(conn, _cursor, statement, *_args) -> None:
        seen.append((statement.split()[0], conn.connection.dbapi_connection.autocommit))

    event.listen(engine, "before_cursor_execute", note)
    try:
        for path in paths:
            seen.clear()
            response = client.get(path, headers=alice)
            assert response.status_code == 200, (path, response.get_data(as_text=True))
            assert seen and all(alone for _, alone in seen), (path, seen)
    finally:
        event.remove(engine, "before_cursor_execute", note)
