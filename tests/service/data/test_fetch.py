"""`labtrain datasets fetch`: downloads from a real HTTP server in the test (with Range requests,
and a mode that cuts the connection half way), checked against the known table's digests (the
entry pointed at a file made here), converted and installed; offline and from-file installs."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import pickle
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from service.cli import main
from service.data import fetch
from service.data.known import KNOWN, PACKAGED
from tests.conftest import free_port

pytestmark = pytest.mark.fast


class FileServer:
    """Serves `files` over HTTP with Range support; `cut` files answer their first request with
    half the bytes (and the full Content-Length) then close; `ignore_range` always sends it all."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.cut, self.ignore_range = dict(files), set(), False
        self.requests: list[tuple[str, str | None]] = []  # (file, Range header)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                asked = self.headers.get("Range")
                server.requests.append((name, asked))
                data = server.files.get(name)
                if data is None:
                    self.send_error(404)
                    return
                start = int(asked[len("bytes=") : -1]) if asked and not server.ignore_range else 0
                if start >= len(data) and asked:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if name in server.cut:
                    server.cut.discard(name)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/mirror"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def make(files: dict[str, bytes]) -> FileServer:
        servers.append(FileServer(files))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def small_mnist(seed: int = 0, rows: int = 30) -> bytes:
    """A small NPZ in the Keras MNIST layout."""
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        x_train=rng.integers(0, 256, (rows, 28, 28), dtype=np.uint8),
        y_train=np.arange(rows, dtype=np.uint8) % 10,
        x_test=rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        y_test=np.arange(10, dtype=np.uint8),
    )
    return buffer.getvalue()


def publish(monkeypatch, name: str, files: dict[str, bytes], algorithm: str = "sha256") -> None:
    """The known table's entry for `name` made to publish the digests of `files` (by file name)."""
    entry = KNOWN[name]
    downloads = tuple(
        dataclasses.replace(d, digests={algorithm: hashlib.new(algorithm, files[d.filename]).hexdigest()})
        for d in entry.downloads
    )
    monkeypatch.setitem(KNOWN, name, dataclasses.replace(entry, downloads=downloads))


@pytest.fixture
def data_dir(tmp_path) -> Path:
    path = tmp_path / "datasets"
    path.mkdir()
    return path


def test_the_subset_is_installed_once_and_a_fetch_replaces_it(serve, monkeypatch, data_dir):
    assert fetch.install_subset(data_dir) == ["mnist"]
    assert fetch.install_subset(data_dir) == []  # once: the file is there
    subset = fetch.state(KNOWN["mnist"], data_dir)
    assert subset.installed and subset.subset
    assert subset.label(KNOWN["mnist"]) == "mnist (subset: 6,000 training and 2,000 test digits)"
    assert (data_dir / "mnist.npz").read_bytes() == (PACKAGED / "mnist-8k.npz").read_bytes()
    assert json.loads((data_dir / "mnist.json").read_text())["subset"] is True

    full = small_mnist()
    server = serve({"mnist.npz": full})
    publish(monkeypatch, "mnist", {"mnist.npz": full})
    seen = []
    installed = fetch.fetch("mnist", data_dir, mirror=server.url, progress=lambda *a: seen.append(a))
    assert installed.installed and not installed.subset and installed.size == len(full)
    assert (data_dir / "mnist.npz").read_bytes() == full
    marker = json.loads((data_dir / "mnist.json").read_text())
    assert marker["subset"] is False and marker["source"] == f"{server.url}/mnist.npz"
    assert marker["sha256"] == hashlib.sha256(full).hexdigest()
    assert seen[-1] == (len(full), len(full), "mnist.npz")
    assert not list(data_dir.glob("*.part"))
    assert fetch.install_subset(data_dir) == []  # never over the full set


def test_a_subset_copied_by_hand_without_its_marker_is_still_the_subset(data_dir):
    (data_dir / "mnist.npz").write_bytes((PACKAGED / "mnist-8k.npz").read_bytes())
    assert fetch.state(KNOWN["mnist"], data_dir).subset
    (data_dir / "mnist.npz").write_bytes(small_mnist())
    assert not fetch.state(KNOWN["mnist"], data_dir).subset


def test_a_checksum_mismatch_is_refused_and_nothing_is_left(serve, monkeypatch, data_dir):
    fetch.install_subset(data_dir)
    published, served = small_mnist(0), small_mnist(1)
    server = serve({"mnist.npz": served})
    publish(monkeypatch, "mnist", {"mnist.npz": published})
    with pytest.raises(fetch.FetchError) as raised:
        fetch.fetch("mnist", data_dir, mirror=server.url)
    assert raised.value.code == "checksum_mismatch"
    assert hashlib.sha256(published).hexdigest() in raised.value.message
    assert hashlib.sha256(served).hexdigest() in raised.value.message
    assert not (data_dir / "mnist.npz.part").exists()
    assert fetch.state(KNOWN["mnist"], data_dir).subset  # what was installed stays


def test_a_download_cut_half_way_resumes_to_the_same_bytes(serve, monkeypatch, data_dir):
    full = small_mnist(rows=200)
    server = serve({"mnist.npz": full})
    server.cut.add("mnist.npz")
    publish(monkeypatch, "mnist", {"mnist.npz": full})
    fetch.fetch("mnist", data_dir, mirror=server.url, pause_s=0)
    assert (data_dir / "mnist.npz").read_bytes() == full
    (first, no_range), (second, asked) = server.requests
    assert first == second == "mnist.npz" and no_range is None
    kept = int(asked.removeprefix("bytes=").removesuffix("-"))  # what the part held when the connection broke
    assert 0 < kept <= len(full) // 2


def test_a_part_left_by_an_earlier_run_is_continued_or_started_over(serve, monkeypatch, data_dir):
    full = small_mnist(rows=200)
    server = serve({"mnist.npz": full})
    publish(monkeypatch, "mnist", {"mnist.npz": full})
    (data_dir / "mnist.npz.part").write_bytes(full[:1000])
    fetch.fetch("mnist", data_dir, mirror=server.url)
    assert server.requests == [("mnist.npz", "bytes=1000-")]
    assert (data_dir / "mnist.npz").read_bytes() == full

    server.ignore_range = True  # a server without Range support sends it all: the part starts over
    (data_dir / "mnist.npz.part").write_bytes(b"x" * 1000)
    fetch.fetch("mnist", data_dir, mirror=server.url, force=True)
    assert (data_dir / "mnist.npz").read_bytes() == full


def test_offline_says_how_to_install_from_a_file(data_dir, monkeypatch):
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(fetch.FetchError) as raised:
        fetch.fetch("mnist", data_dir, mirror=closed)
    assert raised.value.code == "offline"
    message = raised.value.message
    assert f"{closed}/mnist.npz" in message and "connection refused" in message
    assert "labtrain datasets fetch mnist --from mnist.npz" in message
    assert "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz" in message

    monkeypatch.setenv("LABTRAIN_DATA_DIR", str(data_dir))
    monkeypatch.setenv("LABTRAIN_DATASETS_MIRROR", closed)
    result = CliRunner().invoke(main, ["datasets", "fetch", "mnist"])
    assert result.exit_code == 3, result.output
    assert "--from mnist.npz" in result.output
    assert not (data_dir / "mnist.npz").exists()


def test_the_cli_installs_from_a_file_with_the_same_check(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("LABTRAIN_HOME", str(tmp_path))
    monkeypatch.setenv("LABTRAIN_DATA_DIR", str(data_dir))
    full, other = small_mnist(0), small_mnist(1)
    publish(monkeypatch, "mnist", {"mnist.npz": full})
    wrong = tmp_path / "other.npz"
    wrong.write_bytes(other)
    result = CliRunner().invoke(main, ["datasets", "fetch", "mnist", "--from", str(wrong)])
    assert result.exit_code == 4 and "is not the published file" in result.output
    assert wrong.exists() and not (data_dir / "mnist.npz").exists()  # the lab's own file is not removed

    right = tmp_path / "mnist.npz"
    right.write_bytes(full)
    result = CliRunner().invoke(main, ["datasets", "fetch", "mnist", "--from", str(right)])
    assert result.exit_code == 0, result.output
    assert (data_dir / "mnist.npz").read_bytes() == full and right.exists()
    assert json.loads((data_dir / "mnist.json").read_text())["source"] == f"file: {right.resolve()}"
    result = CliRunner().invoke(main, ["datasets", "fetch", "mnist", "--from", str(right)])
    assert result.exit_code == 0 and "--force" in result.output  # installed already: left as it is

    listing = CliRunner().invoke(main, ["datasets", "fetch", "--list"])
    assert listing.exit_code == 0
    rows = {line.split()[0]: line.split()[1] for line in listing.output.splitlines()[1:]}
    assert rows == {"mnist": "yes", "fashion_mnist": "no", "cifar10": "no"}


def test_unknown_and_busy_data_sets(data_dir, monkeypatch):
    with pytest.raises(fetch.FetchError) as raised:
        fetch.fetch("imagenet", data_dir)
    assert raised.value.code == "unknown_dataset" and "mnist, fashion_mnist, cifar10" in raised.value.message
    held = fetch.claim("mnist", data_dir)
    try:
        assert fetch.running(KNOWN["mnist"], data_dir)
        with pytest.raises(fetch.FetchError) as raised:
            fetch.fetch("mnist", data_dir, mirror="http://127.0.0.1:1")
        assert raised.value.code == "busy"
    finally:
        held.release()
    assert not fetch.running(KNOWN["mnist"], data_dir)


def idx(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_is_four_idx_files_made_one_npz(serve, monkeypatch, data_dir):
    rng = np.random.default_rng(3)
    x_train, x_test = rng.integers(0, 256, (20, 28, 28)), rng.integers(0, 256, (6, 28, 28))
    y_train, y_test = np.arange(20) % 10, np.arange(6)
    files = {
        "train-labels-idx1-ubyte.gz": idx(y_train, 0x801),
        "train-images-idx3-ubyte.gz": idx(x_train, 0x803),
        "t10k-labels-idx1-ubyte.gz": idx(y_test, 0x801),
        "t10k-images-idx3-ubyte.gz": idx(x_test, 0x803),
    }
    server = serve(files)
    publish(monkeypatch, "fashion_mnist", files, "md5")  # Zalando publishes MD5s
    installed = fetch.fetch("fashion_mnist", data_dir, mirror=server.url)
    assert installed.installed and not installed.subset
    with np.load(data_dir / "fashion_mnist.npz") as npz:
        assert (npz["x_train"] == x_train).all() and (npz["y_test"] == y_test).all()
        assert npz["x_test"].shape == (6, 28, 28) and npz["y_train"].dtype == np.uint8
    assert {name for name, _ in server.requests} == set(files)
    assert not list(data_dir.glob("*.part"))


def cifar_archive(batches: dict[str, object]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, batch in batches.items():
            data = pickle.dumps(batch, protocol=3)  # bytes as bytes, as the published batches load
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_cifar10_batches_become_images_and_nothing_but_arrays_is_unpickled(tmp_path, monkeypatch, data_dir):
    rng = np.random.default_rng(5)
    batches = {
        name: {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 9]}
        for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
    }
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(cifar_archive(batches))
    publish(monkeypatch, "cifar10", {archive.name: archive.read_bytes()})
    fetch.fetch("cifar10", data_dir, source=archive)
    with np.load(data_dir / "cifar10.npz") as npz:
        assert npz["x_train"].shape == (20, 32, 32, 3) and npz["x_test"].shape == (4, 32, 32, 3)
        first = batches["data_batch_1"][b"data"][0]
        assert (npz["x_train"][0, :, :, 0] == first[:1024].reshape(32, 32)).all()  # red plane first
        assert (npz["x_train"][0, :, :, 2] == first[2048:].reshape(32, 32)).all()
        assert list(npz["y_test"]) == [0, 1, 2, 9]

    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "ran",))

    hostile = tmp_path / "hostile" / archive.name
    hostile.parent.mkdir()
    hostile.write_bytes(cifar_archive({**batches, "test_batch": Payload()}))
    publish(monkeypatch, "cifar10", {archive.name: hostile.read_bytes()})  # a digest that matches
    with pytest.raises(fetch.FetchError) as raised:
        fetch.fetch("cifar10", data_dir, source=hostile.parent, force=True)
    assert raised.value.code == "invalid_file" and "never loaded" in raised.value.message
    assert not (tmp_path / "ran").exists()
