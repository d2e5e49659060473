"""MLflow's proxied artifact routes: hostile paths, links on disk, who may read and write a run's
artifacts, where they live (a job's among its outputs), the bounds (a job's outputs limit, the
owner's storage quota), and MLflow's own client against a real labtrain."""

from __future__ import annotations

import dataclasses
import http.client
import io
import json
import textwrap
from pathlib import Path

import pytest

from service.api import create_app
from service.core import storage
from service.core.orm import User
from service.tracking import artifacts, store
from service.tracking.artifact_files import Missing, RunFolder, TooLarge, UnsafePath, split_path
from service.tracking.principal import JobPrincipal, UserPrincipal
from service.tracking.runs import job_run_id
from tests.support.api import IRIS_KNN
from tests.support.mlflow_server import MlflowServer, mlflow_server

PREFIX = "/api/2.0/mlflow-artifacts"
MB = 1024 * 1024


# The files on disk, with no server (the fast tier).


@pytest.mark.fast
@pytest.mark.parametrize(
    "path",
    ["..", "a/../b", "a/..", "/etc/passwd", "a\\b", "..\\x", "a\x00b", "a\nb", "%2e%2e/x", "a/%252e%252e/b", "./a"],
)
def test_a_hostile_path_is_refused(path):
    with pytest.raises(UnsafePath):
        split_path(path)


@pytest.mark.fast
def test_a_plain_path_splits_into_its_names():
    assert split_path("model/weights.bin") == ["model", "weights.bin"]
    assert split_path("a//b/") == ["a", "b"]  # as the file system reads it
    assert split_path("") == []
    assert split_path("..hidden/x..y") == ["..hidden", "x..y"]


@pytest.fixture
def folder(tmp_path) -> RunFolder:
    (tmp_path / "artifacts").mkdir()
    return RunFolder(tmp_path / "artifacts", ("mlflow", "run"))


@pytest.mark.fast
def test_a_file_is_written_read_listed_and_deleted(folder, tmp_path):
    assert folder.list([]) == []  # nothing yet, not an error
    assert folder.write(["model", "w.bin"], io.BytesIO(b"abc"), allowance=3) == 3
    assert folder.write(["notes.txt"], io.BytesIO(b""), allowance=0) == 0
    assert [(e.name, e.is_dir, e.size) for e in folder.list([])] == [("model", True, None), ("notes.txt", False, 0)]
    handle, size = folder.open(["model", "w.bin"])
    with handle:
        assert (handle.read(), size) == (b"abc", 3)
    assert folder.list(["model", "w.bin"]) == []  # a file lists as nothing, as MLflow's stores answer
    folder.delete(["model"])
    assert [e.name for e in folder.list([])] == ["notes.txt"]
    folder.delete([])
    assert folder.list([]) == [] and (tmp_path / "artifacts" / "mlflow" / "run").is_dir()
    with pytest.raises(Missing):
        folder.open(["notes.txt"])


@pytest.mark.fast
def test_a_file_appears_whole_or_not_at_all(folder, tmp_path):
    folder.write(["f.txt"], io.BytesIO(b"old"), allowance=10)
    seen = []

    class Body:
        """Looks at the file while its replacement arrives."""

        chunks = [b"new ", b"content"]

        def read(self, _size):
            seen.append((tmp_path / "artifacts/mlflow/run/f.txt").read_bytes())
            seen.append(sorted(e.name for e in folder.list([])))
            return self.chunks.pop(0) if self.chunks else b""

    folder.write(["f.txt"], Body(), allowance=100)
    assert {content for content in seen[::2]} == {b"old"} and {tuple(n) for n in seen[1::2]} == {("f.txt",)}
    assert (tmp_path / "artifacts/mlflow/run/f.txt").read_bytes() == b"new content"


@pytest.mark.fast
def test_a_body_past_the_allowance_leaves_nothing(folder, tmp_path):
    folder.write(["keep.txt"], io.BytesIO(b"kept"), allowance=10)
    with pytest.raises(TooLarge):
        folder.write(["big.bin"], io.BytesIO(b"x" * 11), allowance=10)
    with pytest.raises(TooLarge):
        folder.write(["keep.txt"], io.BytesIO(b"x" * 11), allowance=10)
    assert sorted(p.name for p in (tmp_path / "artifacts/mlflow/run").iterdir()) == ["keep.txt"]
    assert (tmp_path / "artifacts/mlflow/run/keep.txt").read_bytes() == b"kept"


@pytest.mark.fast
def test_links_on_disk_are_never_followed(folder, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    run = tmp_path / "artifacts/mlflow/run"
    run.mkdir(parents=True)
    (run / "dir").symlink_to(outside)
    (run / "file.txt").symlink_to(outside / "secret.txt")
    (run / "real").mkdir()
    (run / "real" / "up").symlink_to(tmp_path)

    for write in (["dir", "x.txt"], ["file.txt"], ["real", "up", "outside", "y.txt"]):
        with pytest.raises(UnsafePath, match="link"):
            folder.write(write, io.BytesIO(b"planted"), allowance=100)
    for read in (["dir", "secret.txt"], ["file.txt"]):
        with pytest.raises(UnsafePath, match="link"):
            folder.open(read)
    with pytest.raises(UnsafePath, match="link"):
        folder.list(["dir"])
    assert [e.name for e in folder.list([])] == ["real"]  # links are not listed
    folder.delete(["dir"])
    folder.delete(["real"])
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "secret"
    assert sorted(p.name for p in run.iterdir()) == ["file.txt"]

    # The run's own folder swapped for a link: refused too.
    (tmp_path / "elsewhere").mkdir()
    other = RunFolder(tmp_path / "artifacts", ("mlflow", "linked"))
    (tmp_path / "artifacts/mlflow/linked").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafePath, match="link"):
        other.write(["a.txt"], io.BytesIO(b"x"), allowance=10)
    assert list((tmp_path / "elsewhere").iterdir()) == []


@pytest.mark.fast
def test_a_file_where_a_folder_is_named_is_refused(folder):
    folder.write(["a.txt"], io.BytesIO(b"x"), allowance=10)
    with pytest.raises(UnsafePath, match="not a folder"):
        folder.write(["a.txt", "b.txt"], io.BytesIO(b"y"), allowance=10)
    folder.write(["d", "e.txt"], io.BytesIO(b"x"), allowance=10)
    with pytest.raises(UnsafePath, match="folder"):
        folder.write(["d"], io.BytesIO(b"y"), allowance=10)


@pytest.mark.fast
def test_the_artifact_uri_names_the_experiment_and_the_run():
    assert artifacts.artifact_uri(3, "ab" * 16) == f"mlflow-artifacts:/3/{'ab' * 16}/artifacts"


# The routes in process (the fast tier runs them on SQLite).


def _user(db, name: str) -> User:
    with db.session() as session:
        user = session.query(User).filter_by(name=name).one()
        session.expunge(user)
        return user


def _own_run(db, name: str) -> str:
    with db.session() as session:
        user = session.query(User).filter_by(name=name).one()
        run = store.create_run(session, UserPrincipal(user), "0", None, [], "a laptop run")
        session.commit()
        return run.info.run_id


def _queued_job(client, headers) -> str:
    answer = client.post("/api/v1/jobs", json=IRIS_KNN, headers=headers)
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()["id"]


def path_of(route: str) -> str:
    return route.removeprefix(f"{PREFIX}/artifacts/")


def _mlflow_error(response, status: int, code: str) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error_code", "message"} and body["error_code"] == code, body
    return body["message"]


@pytest.mark.fast
def test_a_users_run_keeps_its_artifacts_in_a_folder_of_its_own(client, alice, bob, db, settings):
    run_id = _own_run(db, "alice")
    base = f"{PREFIX}/artifacts/0/{run_id}/artifacts"
    assert client.put(f"{base}/plots/loss.png", data=b"png bytes", headers=alice).get_json() == {}
    assert client.put(f"{base}/notes.txt", data=b"hello", headers=alice).status_code == 200

    listed = client.get(f"{PREFIX}/artifacts", query_string={"path": f"0/{run_id}/artifacts"}, headers=alice)
    assert listed.get_json() == {
        "files": [{"path": "notes.txt", "is_dir": False, "file_size": 5}, {"path": "plots", "is_dir": True}]
    }
    inner = client.get(f"{PREFIX}/artifacts", query_string={"path": f"0/{run_id}/artifacts/plots"}, headers=alice)
    assert inner.get_json() == {"files": [{"path": "loss.png", "is_dir": False, "file_size": 9}]}
    download = client.get(f"{base}/plots/loss.png", headers=alice)
    assert download.status_code == 200 and download.data == b"png bytes"
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    on_disk = storage.mlflow_runs_dir(settings, _user(db, "alice").id) / run_id
    assert (on_disk / "plots" / "loss.png").read_bytes() == b"png bytes"

    # Another user's run answers as a run that does not exist, whatever they ask.
    unknown = "f" * 32
    for method, path, query in [
        ("GET", f"{PREFIX}/artifacts", {"path": "0/{run}/artifacts"}),
        ("GET", f"{PREFIX}/artifacts/0/{{run}}/artifacts/notes.txt", None),
        ("PUT", f"{PREFIX}/artifacts/0/{{run}}/artifacts/notes.txt", None),
        ("DELETE", f"{PREFIX}/artifacts/0/{{run}}/artifacts/notes.txt", None),
    ]:
        answers = []
        for run in (run_id, unknown):
            filled = {k: v.format(run=run) for k, v in (query or {}).items()}
            response = client.open(path.format(run=run), method=method, query_string=filled, data=b"bob's", headers=bob)
            answers.append(_mlflow_error(response, 404, "RESOURCE_DOES_NOT_EXIST").replace(run, "<run>"))
        assert answers[0] == answers[1], (method, path)
    assert (on_disk / "notes.txt").read_bytes() == b"hello"

    assert client.delete(f"{base}/plots", headers=alice).get_json() == {}
    assert not (on_disk / "plots").exists() and (on_disk / "notes.txt").exists()
    me = client.get("/api/v1/me", headers=alice).get_json()["storage"]["by_kind"]
    assert me["runs"] == 5


@pytest.mark.fast
def test_hostile_paths_and_links_are_refused(client, alice, db, settings, tmp_path):
    run_id = _own_run(db, "alice")
    base = f"{PREFIX}/artifacts/0/{run_id}/artifacts"
    client.put(f"{base}/ok.txt", data=b"ok", headers=alice)
    for path in ("../../../escape.txt", "a/../../x.txt", "a\\b.txt", "a%00b.txt", "%2e%2e/x.txt"):
        response = client.put(f"{base}/{path}", data=b"hostile", headers=alice)
        assert "Invalid path" in _mlflow_error(response, 400, "INVALID_PARAMETER_VALUE"), path
    listed = client.get(f"{PREFIX}/artifacts", query_string={"path": f"0/{run_id}/artifacts/.."}, headers=alice)
    _mlflow_error(listed, 400, "INVALID_PARAMETER_VALUE")

    on_disk = storage.mlflow_runs_dir(settings, _user(db, "alice").id) / run_id
    outside = tmp_path / "outside"
    outside.mkdir()
    (on_disk / "linked").symlink_to(outside)
    for method in ("PUT", "GET"):
        response = client.open(f"{base}/linked/x.txt", method=method, data=b"through", headers=alice)
        assert "link" in _mlflow_error(response, 400, "INVALID_PARAMETER_VALUE")
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in settings.artifact_dir.rglob("*") if p.is_file()) == ["ok.txt"]


@pytest.mark.fast
def test_errors_on_these_routes_are_in_mlflows_shape(client, alice, db):
    run_id = _own_run(db, "alice")
    _mlflow_error(
        client.get(f"{PREFIX}/artifacts", query_string={"path": f"0/{run_id}/artifacts"}), 401, "UNAUTHENTICATED"
    )
    _mlflow_error(
        client.get(f"{PREFIX}/artifacts/0/{run_id}/artifacts/x", headers=alice), 404, "RESOURCE_DOES_NOT_EXIST"
    )


@pytest.mark.fast
def test_a_path_that_names_no_run_is_not_found(client, alice):
    for path in ("", "0", "0/abc", f"0/{'a' * 32}/other"):
        response = client.get(f"{PREFIX}/artifacts", query_string={"path": path}, headers=alice)
        _mlflow_error(response, 404, "RESOURCE_DOES_NOT_EXIST")


@pytest.mark.fast
def test_a_jobs_run_keeps_its_artifacts_among_the_jobs_outputs(client, alice, bob, db, settings):
    job_id = _queued_job(client, alice)
    base = f"{PREFIX}/artifacts/1/{job_run_id(job_id)}/artifacts"
    assert client.put(f"{base}/model/MLmodel", data=b"flavors: {}", headers=alice).status_code == 200
    assert (storage.job_outputs_dir(settings, job_id) / "mlflow" / "model" / "MLmodel").read_bytes() == b"flavors: {}"
    listed = client.get(f"/api/v1/jobs/{job_id}/artifacts", headers=alice).get_json()["items"]
    assert listed == [{"path": "mlflow/model/MLmodel", "size": 11}]
    assert client.get(f"{base}/model/MLmodel", headers=alice).data == b"flavors: {}"
    _mlflow_error(client.get(f"{base}/model/MLmodel", headers=bob), 404, "RESOURCE_DOES_NOT_EXIST")


@pytest.mark.fast
def test_a_job_writes_its_own_run_and_nothing_else(client, alice, bob, db, settings):
    own, alices_other = _queued_job(client, alice), _queued_job(client, alice)
    bobs = _queued_job(client, bob)
    laptop_run = _own_run(db, "alice")
    principal = JobPrincipal(job_id=own, owner_id=_user(db, "alice").id)

    def ask(method: str, path: str, body: bytes = b"") -> artifacts.Answer:
        with db.session() as session:
            return artifacts.handle(
                session, settings, principal, method, f"artifacts/{path}", {}, io.BytesIO(body), len(body)
            )

    assert ask("PUT", f"1/{job_run_id(own)}/artifacts/metrics.json", b"{}").status == 200
    for run in (job_run_id(alices_other), job_run_id(bobs), laptop_run):
        answer = ask("PUT", f"1/{run}/artifacts/planted.txt", b"x")
        assert (answer.status, answer.body["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
        answer = ask("GET", f"1/{run}/artifacts/planted.txt")
        assert (answer.status, answer.body["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    answer = ask("GET", f"1/{job_run_id(own)}/artifacts/metrics.json")
    with answer.file.handle as handle:
        assert handle.read() == b"{}"
    files = sorted(p.relative_to(settings.artifact_dir) for p in settings.artifact_dir.rglob("*") if p.is_file())
    assert files == [Path("jobs", own, "outputs", "mlflow", "metrics.json")]


@pytest.mark.fast
def test_multipart_and_presigned_transfers_answer_not_implemented(client, alice, db):
    run_id = _own_run(db, "alice")
    for action in ("create", "complete", "abort"):
        response = client.post(f"{PREFIX}/mpu/{action}/0/{run_id}/artifacts", json={"path": "x"}, headers=alice)
        _mlflow_error(response, 501, "NOT_IMPLEMENTED")
    _mlflow_error(client.get(f"{PREFIX}/presigned/0/{run_id}/artifacts/x", headers=alice), 501, "NOT_IMPLEMENTED")


@pytest.fixture
def small_limits(settings, db):
    """The API with a job's outputs and a user's storage held to 1 MB each."""
    app = create_app(dataclasses.replace(settings, max_outputs_mb=1, storage_quota_mb=1))
    yield app.test_client(), app.extensions["labtrain"].settings
    app.extensions["labtrain"].db.dispose()


@pytest.mark.fast
def test_a_jobs_run_is_bounded_by_the_jobs_outputs_limit(alice, db, small_limits):
    client, limited = small_limits
    job_id = _queued_job(client, alice)
    base = f"{PREFIX}/artifacts/1/{job_run_id(job_id)}/artifacts"
    assert client.put(f"{base}/a.bin", data=b"x" * (MB // 2), headers=alice).status_code == 200
    # Over the limit by its declared length, and by what arrives (no Content-Length to go by).
    message = _mlflow_error(
        client.put(f"{base}/b.bin", data=b"x" * (MB // 2 + 1), headers=alice), 413, "RESOURCE_LIMIT_EXCEEDED"
    )
    assert "LABTRAIN_MAX_OUTPUTS_MB" in message
    chunked = client.put(
        f"{base}/c.bin", input_stream=io.BytesIO(b"x" * MB), headers={**alice, "Transfer-Encoding": "chunked"}
    )
    assert chunked.status_code in (411, 413)
    with db.session() as session:  # a body with no declared length is counted as it arrives
        owner = session.query(User).filter_by(name="alice").one()
        answer = artifacts.handle(
            session, limited, UserPrincipal(owner), "PUT", f"artifacts/{path_of(base)}/d.bin", {}, io.BytesIO(b"x" * MB)
        )
    assert (answer.status, answer.body["error_code"]) == (413, "RESOURCE_LIMIT_EXCEEDED")
    # A file replaced gives its bytes back.
    assert client.put(f"{base}/a.bin", data=b"y" * MB, headers=alice).status_code == 200
    outputs = storage.job_outputs_dir(limited, job_id) / "mlflow"
    assert sorted(p.name for p in outputs.iterdir()) == ["a.bin"]


@pytest.mark.fast
def test_other_runs_count_against_the_owners_storage_quota(alice, db, small_limits):
    client, _ = small_limits
    run_id = _own_run(db, "alice")
    base = f"{PREFIX}/artifacts/0/{run_id}/artifacts"
    assert client.put(f"{base}/a.bin", data=b"x" * (MB - 10), headers=alice).status_code == 200
    message = _mlflow_error(client.put(f"{base}/b.bin", data=b"x" * 11, headers=alice), 413, "RESOURCE_LIMIT_EXCEEDED")
    assert "storage quota" in message
    storage_view = client.get("/api/v1/me", headers=alice).get_json()["storage"]
    assert storage_view["by_kind"]["runs"] == MB - 10
    # The quota counts the runs too: a data set past what is left is refused.
    upload = client.post(
        "/api/v1/datasets",
        data={"file": (io.BytesIO(b"a,b\n" + b"1,2\n" * 10), "t.csv")},
        headers=alice,
        content_type="multipart/form-data",
    )
    assert upload.status_code == 413 and upload.get_json()["error"]["code"] == "quota_exceeded"


# MLflow's own client, in a process of its own, against a real labtrain.


@pytest.fixture(scope="module")
def server(tmp_path_factory, make_pg_database, make_redis_url):
    with mlflow_server(
        tmp_path_factory.mktemp("mlflow-artifacts"),
        make_pg_database(),
        make_redis_url(),
        LABTRAIN_STORAGE_QUOTA_MB="2",
    ) as running:
        yield running


CLIENT_SCRIPT = """
import json, os, sys, tempfile
import mlflow
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

out = {}
work = tempfile.mkdtemp()
"""


def _client(server: MlflowServer, user: str, body: str) -> dict:
    script = CLIENT_SCRIPT + textwrap.dedent(body) + "\nprint('RESULT ' + json.dumps(out))\n"
    finished = server.run_client(user, script)
    assert finished.returncode == 0, finished.stderr[-4000:]
    line = [line for line in finished.stdout.splitlines() if line.startswith("RESULT ")][-1]
    return json.loads(line.removeprefix("RESULT "))


def test_mlflows_client_logs_lists_and_downloads_artifacts(server):
    out = _client(
        server,
        "alice",
        """
        with open(os.path.join(work, "weights.bin"), "wb") as f:
            f.write(bytes(range(256)) * 40)
        os.makedirs(os.path.join(work, "plots", "deep"))
        for name in ("plots/a.txt", "plots/deep/b.txt"):
            with open(os.path.join(work, name), "w") as f:
                f.write(name)
        with mlflow.start_run() as run:
            mlflow.log_artifact(os.path.join(work, "weights.bin"))
            mlflow.log_artifact(os.path.join(work, "weights.bin"), artifact_path="model")
            mlflow.log_artifacts(os.path.join(work, "plots"), artifact_path="plots")
            mlflow.log_text("hello text", "notes/readme.txt")
            mlflow.log_dict({"lr": 0.01, "layers": [64, 32]}, "config.json")
        out["run_id"] = run.info.run_id
        out["uri"] = run.info.artifact_uri
        client = MlflowClient()
        out["root"] = [(f.path, f.is_dir, f.file_size) for f in client.list_artifacts(run.info.run_id)]
        out["plots"] = [(f.path, f.is_dir) for f in client.list_artifacts(run.info.run_id, "plots")]
        local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=os.path.join(work, "down"))
        found = {}
        for folder, _, names in os.walk(local):
            for name in names:
                path = os.path.join(folder, name)
                found[os.path.relpath(path, local)] = os.path.getsize(path)
        out["downloaded"] = found
        out["text"] = mlflow.artifacts.load_text(run.info.artifact_uri + "/notes/readme.txt")
        out["dict"] = mlflow.artifacts.load_dict(run.info.artifact_uri + "/config.json")
        """,
    )
    assert out["uri"].startswith("mlflow-artifacts:/") and out["uri"].endswith(f"{out['run_id']}/artifacts")
    sizes = out["downloaded"]
    assert sizes == {
        "weights.bin": 10240,
        "model/weights.bin": 10240,
        "plots/a.txt": 11,
        "plots/deep/b.txt": 16,
        "notes/readme.txt": 10,
        "config.json": sizes["config.json"],
    }
    assert out["root"] == [
        ["config.json", False, sizes["config.json"]],
        ["model", True, None],
        ["notes", True, None],
        ["plots", True, None],
        ["weights.bin", False, 10240],
    ]
    assert out["plots"] == [["plots/a.txt", False], ["plots/deep", True]]
    assert out["text"] == "hello text" and out["dict"] == {"lr": 0.01, "layers": [64, 32]}

    # Another user: the run's artifacts are a missing run's; their own upload past the quota is MLflow's error.
    theirs = _client(
        server,
        "bob",
        f"""
        client = MlflowClient()
        uri = "{out["uri"]}"

        def outcome(call):
            try:
                call()
                return "allowed"
            except MlflowException as exc:  # the tracking API's answer
                return [exc.error_code, exc.get_http_status_code()]
            except requests.HTTPError as exc:  # the artifact routes' answer, as the client raises it
                return [exc.response.json()["error_code"], exc.response.status_code]

        out["list"] = outcome(lambda: client.list_artifacts("{out["run_id"]}"))
        out["list by uri"] = outcome(lambda: mlflow.artifacts.list_artifacts(artifact_uri=uri))
        out["download"] = outcome(lambda: mlflow.artifacts.download_artifacts(uri + "/weights.bin", dst_path=work))
        with open(os.path.join(work, "big.bin"), "wb") as f:
            f.write(b"x" * (3 * 1024 * 1024))
        with mlflow.start_run():
            out["big"] = outcome(lambda: mlflow.log_artifact(os.path.join(work, "big.bin")))
        """,
    )
    assert theirs["list"] == theirs["list by uri"] == theirs["download"] == ["RESOURCE_DOES_NOT_EXIST", 404]
    assert theirs["big"] == ["RESOURCE_LIMIT_EXCEEDED", 413]
    assert [p.name for p in server.home.rglob("big.bin") if "home-bob" not in p.parts] == []


def test_a_dot_dot_path_sent_as_is_is_refused(server):
    run_id = _client(server, "alice", "out['run'] = mlflow.start_run().info.run_id; mlflow.end_run()")["run"]
    # http.client sends the path as written (requests would resolve the dot segments first).
    for path in (f"0/{run_id}/artifacts/../../../../escape.txt", f"0/{run_id}/artifacts/%2e%2e/%2e%2e/escape.txt"):
        connection = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=30)
        connection.request(
            "PUT",
            f"{PREFIX}/artifacts/{path}",
            body=b"up",
            headers={"Authorization": f"Bearer {server.tokens['alice']}"},
        )
        answer = connection.getresponse()
        body = json.loads(answer.read())
        connection.close()
        assert (answer.status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), path
    assert list(server.home.rglob("escape.txt")) == []
