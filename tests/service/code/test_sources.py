"""Uploading students' code: one file or a project, unpacked into its own folder; hostile
archives (links out, `..`, absolute names, devices, bombs) are refused with a 4xx that names
the entry, and leave nothing behind."""

from __future__ import annotations

import dataclasses
import io
import stat
import tarfile
import zipfile

import pytest

from service.core import storage
from tests.support.api import assert_error

pytestmark = pytest.mark.fast

SCRIPT = b"import labtrain_job\nlabtrain_job.report(epoch=1, loss=0.5)\n"


def upload(client, headers, data: bytes, filename: str):
    return client.post(
        "/api/v1/sources",
        data={"file": (io.BytesIO(data), filename)},
        headers=headers,
        content_type="multipart/form-data",
    )


def zipped(entries: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def tarred(members: list[tarfile.TarInfo], data: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for member in members:
            content = data.get(member.name)
            member.size = len(content) if content is not None else 0
            archive.addfile(member, io.BytesIO(content) if content is not None else None)
    return buffer.getvalue()


def sources_on_disk(settings) -> list[str]:
    folder = settings.artifact_dir / "sources"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_script_is_stored_and_listed_for_its_owner_only(client, alice, bob, settings):
    created = upload(client, alice, SCRIPT, "train.py")
    assert created.status_code == 201, created.get_json()
    source = created.get_json()
    assert source["kind"] == "py" and source["files"] == [{"path": "train.py", "size": len(SCRIPT)}]
    assert created.headers["Location"] == f"/api/v1/sources/{source['id']}"
    stored = storage.source_dir(settings, source["id"]) / "train.py"
    assert stored.read_bytes() == SCRIPT
    assert client.get(f"/api/v1/sources/{source['id']}", headers=alice).get_json()["id"] == source["id"]
    assert [s["id"] for s in client.get("/api/v1/sources", headers=alice).get_json()["items"]] == [source["id"]]
    assert client.get("/api/v1/sources", headers=bob).get_json()["items"] == []
    assert_error(client.get(f"/api/v1/sources/{source['id']}", headers=bob), 404, "id")


def test_a_project_in_one_folder_is_stored_without_that_folder(client, alice, settings):
    archive = zipped(
        {
            "project/train.py": SCRIPT,
            "project/lib/model.py": b"X = 1\n",
            "__MACOSX/project/._train.py": b"junk",
            "project/.DS_Store": b"junk",
        }
    )
    source = upload(client, alice, archive, "project.zip").get_json()
    assert [f["path"] for f in source["files"]] == ["lib/model.py", "train.py"]
    assert (storage.source_dir(settings, source["id"]) / "lib" / "model.py").read_bytes() == b"X = 1\n"

    data = {"train.py": SCRIPT, "data/words.txt": b"a b c\n"}
    members = [tarfile.TarInfo(name) for name in data]
    source = upload(client, alice, tarred(members, data), "project.tar.gz").get_json()
    assert source["kind"] == "tar.gz" and [f["path"] for f in source["files"]] == ["data/words.txt", "train.py"]


@pytest.mark.parametrize(
    "archive,name,says",
    [
        (zipped({"../../x.py": SCRIPT}), "up.zip", "climbs out"),
        (zipped({"/etc/cron.d/x": SCRIPT}), "absolute.zip", "absolute"),
        (zipped({"train.py": SCRIPT}, links={"passwd": "/etc/passwd"}), "link.zip", "link"),
        (zipped({"train.py": SCRIPT}, links={"inside": "train.py"}), "inner-link.zip", "link"),
        (zipped({"a\\..\\..\\x.py": SCRIPT}), "backslash.zip", "backslash"),
        (zipped({}), "empty.zip", "no files"),
        (b"PK\x03\x04 not really a zip", "broken.zip", "not a readable zip"),
        (b"\x1f\x8b not really gzip", "broken.tar.gz", "not a readable"),
        (SCRIPT, "train.exe", "not code"),
    ],
)
def test_hostile_or_broken_uploads_are_refused_and_leave_nothing(client, alice, settings, archive, name, says):
    response = upload(client, alice, archive, name)
    assert_error(response, 422, "file")
    assert says in response.get_json()["error"]["message"]
    assert sources_on_disk(settings) == []
    assert client.get("/api/v1/sources", headers=alice).get_json()["items"] == []


def _member(name: str, kind: bytes, **fields) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = kind
    for key, value in fields.items():
        setattr(member, key, value)
    return member


@pytest.mark.parametrize(
    "member,says",
    [
        (_member("passwd", tarfile.SYMTYPE, linkname="/etc/passwd"), "link"),
        (_member("hard", tarfile.LNKTYPE, linkname="/etc/shadow"), "link"),
        (_member("tty", tarfile.CHRTYPE, devmajor=4, devminor=1), "device"),
        (_member("pipe", tarfile.FIFOTYPE), "device or a pipe"),
        (_member("../../../tmp/evil.py", tarfile.REGTYPE), "climbs out"),
    ],
)
def test_links_devices_and_escapes_in_a_tarball_are_refused(client, alice, settings, member, says):
    response = upload(
        client, alice, tarred([_member("train.py", tarfile.REGTYPE), member], {"train.py": SCRIPT}), "project.tar.gz"
    )
    assert_error(response, 422, "file")
    assert says in response.get_json()["error"]["message"]
    assert sources_on_disk(settings) == []


@pytest.fixture
def small_limits(app, settings):
    services = app.extensions["labtrain"]
    services.settings = dataclasses.replace(settings, max_source_bytes=1_000_000, max_source_files=5)
    return services.settings


def test_a_zip_bomb_is_refused_before_it_is_unpacked(client, alice, small_limits):
    bomb = zipped({"train.py": SCRIPT, "zeros.bin": bytes(50_000_000)})  # 50 MB of zeros: about 50 kB zipped
    assert len(bomb) < 200_000
    response = upload(client, alice, bomb, "bomb.zip")
    assert_error(response, 413, "file")
    assert "unpacks to" in response.get_json()["error"]["message"]
    assert sources_on_disk(small_limits) == []


def test_a_tarball_bomb_stops_at_the_limit_while_unpacking(client, alice, small_limits):
    data = {"train.py": SCRIPT, "zeros.bin": bytes(20_000_000)}
    bomb = tarred([tarfile.TarInfo(name) for name in data], data)
    response = upload(client, alice, bomb, "bomb.tar.gz")
    assert_error(response, 413, "file")
    assert sources_on_disk(small_limits) == []


def test_too_many_files_are_refused(client, alice, small_limits):
    response = upload(client, alice, zipped({f"f{i}.py": b"" for i in range(6)}), "many.zip")
    assert_error(response, 413, "file")


def test_a_zip_that_lies_about_its_sizes_is_refused(client, alice, settings):
    honest = zipped({"train.py": SCRIPT, "data.bin": bytes(10_000)})
    # The central directory claims data.bin is 10 bytes; the deflated stream holds 10,000.
    lying = honest.replace((10_000).to_bytes(4, "little"), (10).to_bytes(4, "little"))
    response = upload(client, alice, lying, "lying.zip")
    assert_error(response, 422, "file")
    assert sources_on_disk(settings) == []
