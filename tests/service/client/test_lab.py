"""The Python client's helpers: what a folder upload leaves out, and memory sizes as people write them."""

from __future__ import annotations

import io
import os
import zipfile

import pytest

from service.client.lab import memory_mb, zip_folder

pytestmark = pytest.mark.fast


def test_a_folder_is_zipped_without_caches_environments_or_links(tmp_path):
    for path in (
        "train.py",
        "lib/model.py",
        ".git/HEAD",
        ".venv/bin/python",
        "lib/__pycache__/model.cpython-311.pyc",
        "outputs/old.pt",
        "checkpoints/last.pt",
        "notes.ipynb",
    ):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    os.symlink("/etc/passwd", tmp_path / "passwd")
    with zipfile.ZipFile(io.BytesIO(zip_folder(tmp_path))) as archive:
        assert sorted(archive.namelist()) == ["lib/model.py", "notes.ipynb", "train.py"]


@pytest.mark.parametrize(
    "written,megabytes",
    [("4G", 4096), ("4g", 4096), ("512M", 512), ("512MB", 512), ("1.5G", 1536), ("2048", 2048), (300, 300)],
)
def test_memory_is_read_as_people_write_it(written, megabytes):
    assert memory_mb(written) == megabytes


@pytest.mark.parametrize("written", ["lots", "4X", "G"])
def test_memory_that_is_no_size_is_refused(written):
    with pytest.raises(ValueError, match="4G, 512M"):
        memory_mb(written)
