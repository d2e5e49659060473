"""`labtrain datasets upload` as a user runs it (the installed script, in subprocesses) against a
real API on PostgreSQL, through a TCP proxy that really cuts the connection: a large file goes
in resumable chunks, resumes by itself after one break and on a re-run after another, and the
data set stored equals the file byte for byte."""

from __future__ import annotations

import hashlib
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from service.client.lab import Lab
from tests.conftest import free_port
from tests.service.client.test_client_cli import as_json, client_env, labtrain
from tests.support.processes import ServiceProcess, deployment_env, run_cli, wait_until_healthy

MIB = 1024 * 1024


class CuttingProxy:
    """Forwards 127.0.0.1:port to the API, and cuts every open connection once the bytes sent
    towards the API pass each of `cuts` (each cut happens once)."""

    def __init__(self, target_port: int, cuts: list[int]):
        self.target_port, self.cuts, self.sent = target_port, sorted(cuts), 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: list[socket.socket] = []
        self.cut_count = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.open += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while data := source.recv(256 * 1024):
                sink.sendall(data)
                if upstream and self._passed_a_cut(len(data)):
                    self._cut_all()
                    return
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _passed_a_cut(self, size: int) -> bool:
        with self.lock:
            self.sent += size
            if self.cuts and self.sent >= self.cuts[0]:
                self.cuts.pop(0)
                self.cut_count += 1
                return True
        return False

    def _cut_all(self) -> None:
        with self.lock:
            sockets, self.open = self.open, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        self._cut_all()


@pytest.fixture(scope="module")
def api(tmp_path_factory, make_pg_database):
    """The API alone (uploads need no worker), taking files up to 256 MB."""
    home = tmp_path_factory.mktemp("upload-cli")
    env = deployment_env(
        home, LABTRAIN_DATABASE_URL=make_pg_database(), LABTRAIN_MAX_RESUMABLE_UPLOAD_BYTES=str(256 * MIB)
    )
    port = free_port()
    process = ServiceProcess(["api", "--port", str(port), "--workers", "1"], env, home / "api.log")
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", [process])
        yield home, env, port
    finally:
        process.stop()


def logged_in(api, tmp_path: Path, user: str, url: str) -> dict[str, str]:
    _home, env, _port = api
    created = run_cli(["users", "create", user], env)
    assert created.returncode == 0, created.stderr
    client = client_env(tmp_path)
    assert labtrain(["login", "--url", url, "--token", created.stdout.strip()], client).returncode == 0
    return client


def big_npz(path: Path, megabytes: int) -> str:
    """Random bytes as an NPZ data set of `megabytes` MB and a little more; its sha256."""
    rng = np.random.default_rng(21)
    rows = megabytes * MIB // 1000
    np.savez(path, x=rng.integers(0, 256, size=(rows, 1000), dtype=np.uint8), y=rng.integers(0, 10, size=rows))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_200_mb_upload_cut_twice_resumes_and_is_stored_byte_for_byte(api, tmp_path):
    home, env, port = api
    data = tmp_path / "big.npz"
    digest = big_npz(data, 200)
    proxy = CuttingProxy(port, cuts=[70 * MIB, 140 * MIB])
    try:
        ann = logged_in(api, tmp_path / "ann", "ann", f"http://127.0.0.1:{proxy.port}")
        command = ["datasets", "upload", str(data), "--name", "big", "--json"]
        # With no retries the first cut ends the command, which says how to go on.
        first = labtrain(command, {**ann, "LABTRAIN_UPLOAD_RETRIES": "0"}, timeout=300)
        assert first.returncode != 0 and proxy.cut_count == 1, first.stderr
        assert "run the same command again to resume" in first.stderr
        # The same command again resumes where the server is; the second cut it gets over by itself.
        second = labtrain(command, ann, timeout=300)
        assert second.returncode == 0, second.stderr
        assert proxy.cut_count == 2
        assert "resuming the upload of big.npz at" in second.stderr and "connection lost" in second.stderr
        assert "uploading big.npz: 100%" in second.stderr
    finally:
        proxy.close()
    dataset = as_json(second)
    assert dataset["name"] == "big" and dataset["rows"] == 200 * MIB // 1000 and dataset["kind"] == "npz"
    assert data.stat().st_size > 200 * MIB
    stored = home / "artifacts" / "datasets" / f"{dataset['id']}.npz"
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == digest
    assert not list((home / "artifacts" / "uploads").iterdir())  # consumed: no part file left
    direct = client_env(tmp_path / "ann")  # the same login, now straight to the API
    listed = as_json(labtrain(["datasets", "list", "--json"], {**direct, "LABTRAIN_URL": f"http://127.0.0.1:{port}"}))
    assert dataset["id"] in [item["id"] for item in listed]


def test_past_the_quota_the_cli_prints_the_figures_and_stores_nothing(api, tmp_path):
    home, env, port = api
    url = f"http://127.0.0.1:{port}"
    bea = logged_in(api, tmp_path / "bea", "bea", url)
    assert run_cli(["users", "limits", "bea", "--storage-quota-mb", "10"], env).returncode == 0
    small = tmp_path / "small.csv"  # about 2.9 MB: sent in one multipart request
    small.write_text("a,b,label\n" + "\n".join(f"{i},{i % 7},{i % 2}" for i in range(270_000)))
    size = small.stat().st_size
    assert 2.5 * MIB < size < 3.3 * MIB  # three fit in 10 MB, four do not
    assert labtrain(["datasets", "upload", str(small), "--target", "label"], bea).returncode == 0
    data = tmp_path / "nine.npz"
    big_npz(data, 9)  # past 8 MB: a resumable upload, refused when it is created
    refused = labtrain(["datasets", "upload", str(data)], bea)
    assert refused.returncode != 0
    assert f"you use {size / MIB:.3g} MB (datasets" in refused.stderr and "of 10 MB allowed" in refused.stderr
    assert "delete data sets or sources" in refused.stderr
    for name in ("b", "c"):
        assert labtrain(["datasets", "upload", str(small), "--name", name], bea).returncode == 0
    over = labtrain(["datasets", "upload", str(small), "--name", "d"], bea)  # multipart, past 10 MB
    assert over.returncode != 0 and "past your storage quota" in over.stderr
    me = labtrain(["me"], bea)
    used = f"{3 * size / MIB:.3g} MB"
    assert me.returncode == 0 and f"storage: {used} of 10 MB used (datasets {used})" in me.stdout, me.stdout
    assert not list((home / "artifacts" / "uploads").glob("*"))


def test_code_past_8_mb_goes_as_a_resumable_upload_and_becomes_a_source(api, tmp_path):
    _home, env, port = api
    created = run_cli(["users", "create", "cal"], env)
    assert created.returncode == 0, created.stderr
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text("print('weights are beside me')\n")
    (project / "weights.bin").write_bytes(np.random.default_rng(3).bytes(9 * MIB))  # random: zipped, still 9 MB
    lab = Lab(f"http://127.0.0.1:{port}", created.stdout.strip())
    source = lab.upload(project, name="with-weights")
    assert source["name"] == "with-weights" and source["kind"] == "zip"
    assert {f["path"]: f["size"] for f in source["files"]} == {"train.py": 31, "weights.bin": 9 * MIB}
    single = lab.upload(project / "train.py")  # small: one multipart request
    assert single["files"] == [{"path": "train.py", "size": 31}]
