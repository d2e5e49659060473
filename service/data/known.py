"""The image data sets the server installs by itself (`labtrain datasets fetch NAME`): where each
is published, the checksums its publishers give for those files, and how the files become the
one NPZ a job reads, `<data_dir>/<name>.npz` in the Keras layout (x_train, y_train, x_test,
y_test; images uint8, height x width or height x width x 3). docs/datasets.md says where each
checksum was taken from. Converters parse files whose checksums were already checked."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

KERAS_BASE = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
PACKAGED = Path(__file__).resolve().parent / "files"  # files that ship with the package (the MNIST subset)


@dataclass(frozen=True)
class Download:
    """One published file and the digests published for it (each one given is checked)."""

    filename: str
    url: str
    digests: dict[str, str]  # hashlib name -> hex digest
    size: int  # bytes, for the listing and the progress line before the server says


@dataclass(frozen=True)
class Subset:
    """A part of a data set that ships with the package and serves until the full set is fetched."""

    file: str  # in service/data/files
    note: str  # how jobs and listings name it: "<name> (<note>)"


@dataclass(frozen=True)
class KnownDataset:
    name: str
    title: str
    homepage: str
    licence: str
    downloads: tuple[Download, ...]
    # The checked downloads (in the order above) -> the arrays; None: the one download is the NPZ.
    convert: Callable[[list[Path]], dict[str, np.ndarray]] | None
    shape: tuple[int, ...]
    rows: int
    class_names: tuple[str, ...]  # the name of each label 0, 1, ...; empty: the labels are the names
    subset: Subset | None = None

    @property
    def filename(self) -> str:
        return f"{self.name}.npz"

    @property
    def download_size(self) -> int:
        return sum(d.size for d in self.downloads)


def _idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file (MNIST's format, gzipped): a big-endian header of magic and sizes, then uint8s."""
    with gzip.open(path, "rb") as stream:
        data = stream.read()
    dims = magic & 0xFF
    if int.from_bytes(data[:4], "big") != magic:
        raise ValueError(f"{path.name} is not an IDX file of {dims} dimension(s)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def _fashion_mnist(paths: list[Path]) -> dict[str, np.ndarray]:
    train_labels, train_images, test_labels, test_images = paths
    return {
        "x_train": _idx(train_images, 0x803),
        "y_train": _idx(train_labels, 0x801),
        "x_test": _idx(test_images, 0x803),
        "y_test": _idx(test_labels, 0x801),
    }


class _ArraysOnly(pickle.Unpickler):
    """CIFAR's batches are pickles: rebuild numpy arrays and plain values, and nothing else."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"the CIFAR batch names {module}.{name}, which is never loaded")


def _cifar10(paths: list[Path]) -> dict[str, np.ndarray]:
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with tarfile.open(paths[0], "r:gz") as archive:
        for member in archive:  # read in place: nothing of the archive is written out
            name = member.name.rsplit("/", 1)[-1]
            if member.isfile() and (name.startswith("data_batch_") or name == "test_batch"):
                batch = _ArraysOnly(io.BytesIO(archive.extractfile(member).read()), encoding="bytes").load()
                images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
                batches[name] = (images, np.asarray(batch[b"labels"], dtype=np.uint8))
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    return {
        "x_train": np.concatenate([x for x, _ in train]),
        "y_train": np.concatenate([y for _, y in train]),
        "x_test": batches["test_batch"][0],
        "y_test": batches["test_batch"][1],
    }


def _fashion_file(filename: str, md5: str, size: int) -> Download:
    return Download(filename, KERAS_BASE + filename, {"md5": md5}, size)


KNOWN: dict[str, KnownDataset] = {
    d.name: d
    for d in (
        KnownDataset(
            name="mnist",
            title="MNIST handwritten digits",
            homepage="http://yann.lecun.com/exdb/mnist/",
            licence="CC BY-SA 3.0 (Yann LeCun and Corinna Cortes)",
            downloads=(
                Download(
                    "mnist.npz",
                    KERAS_BASE + "mnist.npz",
                    {"sha256": "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"},
                    11_490_434,
                ),
            ),
            convert=None,
            shape=(28, 28, 1),
            rows=70_000,
            class_names=(),  # the digits are their own names
            subset=Subset("mnist-8k.npz", "subset: 6,000 training and 2,000 test digits"),
        ),
        KnownDataset(
            name="fashion_mnist",
            title="Fashion-MNIST (Zalando's article images)",
            homepage="https://github.com/zalandoresearch/fashion-mnist",
            licence="MIT (Zalando SE)",
            downloads=(
                _fashion_file("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe", 29_515),
                _fashion_file("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26_421_880),
                _fashion_file("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310", 5_148),
                _fashion_file("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79", 4_422_102),
            ),
            convert=_fashion_mnist,
            shape=(28, 28, 1),
            rows=70_000,
            class_names=(
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ),
        ),
        KnownDataset(
            name="cifar10",
            title="CIFAR-10 (32x32 colour pictures in 10 classes)",
            homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
            licence="no licence stated; cite Krizhevsky, Learning Multiple Layers of Features from Tiny Images (2009)",
            downloads=(
                Download(
                    "cifar-10-python.tar.gz",
                    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                    {
                        "md5": "c58f30108f718f92721af3b95e74349a",
                        "sha256": "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                    },
                    170_498_071,
                ),
            ),
            convert=_cifar10,
            shape=(32, 32, 3),
            rows=60_000,
            class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        ),
    )
}
