"""The SLURM cluster these tests run jobs on is the session fixture `slurm_cluster`
(tests/support/slurm_cluster.py, a plugin of tests/conftest.py): one per session. `slurmrestd`
serves it over REST (tests/support/slurmrestd.py), started the first time a test asks for it.
`submit` sends a job through the API in process, on the cpu queue."""

from __future__ import annotations

import pytest

from tests.support.slurmrestd import SlurmRestd


@pytest.fixture(scope="session")
def slurmrestd(slurm_cluster, tmp_path_factory):
    server = SlurmRestd(slurm_cluster, tmp_path_factory.mktemp("slurmrestd"))
    try:
        server.start()
    except RuntimeError as exc:
        server.stop()
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def submit(client, alice):
    def submit(spec: dict, headers=alice) -> str:
        response = client.post("/api/v1/jobs", json=spec, headers=headers)
        assert response.status_code == 201, response.text
        assert response.json["queue"] == "cpu"
        return response.json["id"]

    return submit
