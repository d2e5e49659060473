"""Resumable uploads (the tus 1.0.0 wire format at /api/v1/uploads), what a finished one becomes
(a data set, a course's data set, a source) and the storage quota both kinds of upload meet."""

from __future__ import annotations

import base64
import io
import zipfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from sqlalchemy import func, select, update

from service.cli import main
from service.core.orm import Dataset, Job, Source, Upload, User, new_id, utcnow
from tests.service.api.test_api_datasets_models import CSV, upload
from tests.support.api import IRIS_KNN, assert_error

pytestmark = pytest.mark.fast  # the fast tier: no servers needed (tests/conftest.py)

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"
# About 0.7 MB: two of them pass a quota of 1 MB.
BIG_CSV = ("a,b,label\n" + "\n".join(f"{i},{i * 7 % 13},{i % 2}" for i in range(60_000))).encode()
MB = 1024 * 1024


def metadata(**pairs: str) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in pairs.items())


def create(client, headers, length: int, **meta: str):
    meta = {"filename": "data.csv", **meta}
    return client.post(
        "/api/v1/uploads",
        headers={**headers, **TUS, "Upload-Length": str(length), "Upload-Metadata": metadata(**meta)},
    )


def patch(client, headers, location: str, offset: int, data: bytes, content_type: str = OCTETS):
    return client.patch(
        location,
        headers={**headers, **TUS, "Upload-Offset": str(offset)},
        data=data,
        content_type=content_type,
    )


def head(client, headers, location: str):
    return client.head(location, headers={**headers, **TUS})


def uploaded(client, headers, data: bytes, **meta: str) -> str:
    """A finished upload of `data`: its id."""
    created = create(client, headers, len(data), **meta)
    assert created.status_code == 201, created.get_json()
    location = created.headers["Location"]
    assert patch(client, headers, location, 0, data).status_code == 204
    return location.rsplit("/", 1)[1]


def set_quota(db, name: str, megabytes: int) -> None:
    with db.session() as session:
        session.execute(update(User).where(User.name == name).values(limits={"storage_quota_mb": megabytes}))


def rows(db, table) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(table))


# -- the wire format ------------------------------------------------------------------------------


def test_options_says_what_the_server_speaks(client, alice, settings):
    answer = client.options("/api/v1/uploads", headers=alice)
    assert answer.status_code == 204
    assert answer.headers["Tus-Version"] == "1.0.0" and answer.headers["Tus-Resumable"] == "1.0.0"
    assert set(answer.headers["Tus-Extension"].split(",")) == {"creation", "termination", "expiration"}
    assert answer.headers["Tus-Max-Size"] == str(settings.max_resumable_upload_bytes)


def test_a_request_without_the_protocol_version_is_a_412(client, alice):
    answer = client.post("/api/v1/uploads", headers={**alice, "Upload-Length": "10"})
    assert_error(answer, 412, field="Tus-Resumable")
    assert answer.headers["Tus-Version"] == "1.0.0"
    other = client.post("/api/v1/uploads", headers={**alice, "Tus-Resumable": "0.2.2", "Upload-Length": "10"})
    assert_error(other, 412, field="Tus-Resumable")


def test_create_head_and_patch_in_pieces_then_a_data_set(client, alice, db, settings):
    created = create(client, alice, len(CSV), name="shapes", target="label")
    assert created.status_code == 201, created.get_json()
    location = created.headers["Location"]
    assert location.startswith("/api/v1/uploads/") and created.headers["Tus-Resumable"] == "1.0.0"
    assert created.headers["Upload-Expires"].endswith("GMT")
    first = head(client, alice, location)
    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-store"
    assert (first.headers["Upload-Offset"], first.headers["Upload-Length"]) == ("0", str(len(CSV)))
    assert "filename ZGF0YS5jc3Y=" in first.headers["Upload-Metadata"]

    half = len(CSV) // 2
    answer = patch(client, alice, location, 0, CSV[:half])
    assert answer.status_code == 204 and answer.headers["Upload-Offset"] == str(half)
    assert head(client, alice, location).headers["Upload-Offset"] == str(half)
    # The same bytes again (a retry whose answer was lost) are a conflict that names the offset.
    again = patch(client, alice, location, 0, CSV[:half])
    assert assert_error(again, 409, field="Upload-Offset")["details"]["offset"] == half
    assert_error(patch(client, alice, location, half, CSV[half:], "text/csv"), 415, field="Content-Type")
    assert_error(patch(client, alice, location, half, CSV[half:] + b"more"), 413, field="Upload-Offset")
    # An unfinished upload is not a data set yet.
    upload_id = location.rsplit("/", 1)[1]
    assert_error(client.post("/api/v1/datasets", headers=alice, json={"upload": upload_id}), 409, field="upload")
    assert patch(client, alice, location, half, CSV[half:]).headers["Upload-Offset"] == str(len(CSV))

    dataset = client.post("/api/v1/datasets", headers=alice, json={"upload": upload_id})
    assert dataset.status_code == 201, dataset.get_json()
    view = dataset.get_json()
    assert view["name"] == "shapes" and view["rows"] == 40 and view["target"] == "label"  # the metadata's
    with db.session() as session:
        stored = session.get(Dataset, view["id"])
        assert Path(stored.path).read_bytes() == CSV
    assert head(client, alice, location).status_code == 404  # consumed
    assert not list((settings.artifact_dir / "uploads").iterdir())


def test_an_empty_patch_and_bad_headers(client, alice):
    location = create(client, alice, 5).headers["Location"]
    assert patch(client, alice, location, 0, b"").headers["Upload-Offset"] == "0"
    answer = client.patch(location, headers={**alice, **TUS}, data=b"abc", content_type=OCTETS)
    assert_error(answer, 400, field="Upload-Offset")
    assert_error(patch(client, alice, location, -1, b"abc"), 400, field="Upload-Offset")
    no_length = client.post("/api/v1/uploads", headers={**alice, **TUS, "Upload-Metadata": metadata(filename="a.csv")})
    assert_error(no_length, 400, field="Upload-Length")
    deferred = client.post(
        "/api/v1/uploads",
        headers={**alice, **TUS, "Upload-Defer-Length": "1", "Upload-Metadata": metadata(filename="a")},
    )
    assert_error(deferred, 400, field="Upload-Defer-Length")
    for bad in ("filename", "filename !!!", "filename YQ==,filename YQ=="):
        answer = client.post("/api/v1/uploads", headers={**alice, **TUS, "Upload-Length": "3", "Upload-Metadata": bad})
        if bad == "filename":  # a key without a value: valid, but no name
            assert_error(answer, 422, field="Upload-Metadata")
        else:
            assert_error(answer, 400, field="Upload-Metadata")
    assert_error(create(client, alice, 3, kind="model"), 422, field="Upload-Metadata")
    # A file no route would take is refused before its bytes are sent.
    assert_error(create(client, alice, 3, filename="notes.exe"), 422, field="file", code="invalid_dataset")
    assert_error(create(client, alice, 3, filename="notes.exe", kind="source"), 422, field="file")


def test_past_the_largest_upload_is_a_413_at_creation(client, alice, settings):
    answer = create(client, alice, settings.max_resumable_upload_bytes + 1)
    assert_error(answer, 413, field="Upload-Length", code="too_large")
    assert create(client, alice, settings.max_resumable_upload_bytes).status_code == 201


def test_delete_removes_the_upload_and_its_bytes(client, alice, settings):
    location = create(client, alice, len(CSV)).headers["Location"]
    patch(client, alice, location, 0, CSV[:10])
    part = settings.artifact_dir / "uploads" / f"{location.rsplit('/', 1)[1]}.part"
    assert part.read_bytes() == CSV[:10]
    deleted = client.delete(location, headers={**alice, **TUS})
    assert deleted.status_code == 204 and deleted.headers["Tus-Resumable"] == "1.0.0"
    assert not part.exists()
    assert head(client, alice, location).status_code == 404
    assert_error(patch(client, alice, location, 10, CSV[10:]), 404, field="id")


def test_another_users_upload_is_the_unknown_ids_404(client, alice, bob):
    location = create(client, alice, len(CSV)).headers["Location"]
    upload_id = location.rsplit("/", 1)[1]
    unknown = f"/api/v1/uploads/{new_id()}"
    for ask in (
        lambda where: patch(client, bob, where, 0, CSV),
        lambda where: client.delete(where, headers={**bob, **TUS}),
    ):
        foreign, missing = ask(location), ask(unknown)
        assert_error(foreign, 404, field="id")
        assert foreign.get_json()["error"]["message"].replace(upload_id, "<id>") == missing.get_json()["error"][
            "message"
        ].replace(unknown.rsplit("/", 1)[1], "<id>")
    assert head(client, bob, location).status_code == 404
    patch(client, alice, location, 0, CSV)
    taken = client.post("/api/v1/datasets", headers=bob, json={"upload": upload_id})
    assert_error(taken, 404, field="upload")
    assert head(client, alice, location).headers["Upload-Offset"] == str(len(CSV))  # untouched


def test_an_expired_upload_is_gone(client, alice, db, settings):
    location = create(client, alice, len(CSV)).headers["Location"]
    patch(client, alice, location, 0, CSV[:5])
    with db.session() as session:
        session.execute(update(Upload).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert head(client, alice, location).status_code == 404
    assert rows(db, Upload) == 0 and not list((settings.artifact_dir / "uploads").iterdir())


def test_a_new_upload_sweeps_the_expired_ones(client, alice, bob, db, settings):
    create(client, alice, 10)
    with db.session() as session:
        session.execute(update(Upload).values(expires_at=utcnow() - timedelta(seconds=1)))
    create(client, bob, 10)
    assert rows(db, Upload) == 1 and len(list((settings.artifact_dir / "uploads").iterdir())) == 1


# -- what a finished upload becomes ----------------------------------------------------------------


def test_a_failed_check_leaves_no_data_set_and_the_upload_whole(client, alice, db, settings):
    upload_id = uploaded(client, alice, CSV)
    wrong = client.post("/api/v1/datasets", headers=alice, json={"upload": upload_id, "target": "nope"})
    assert_error(wrong, 422, field="target")
    assert rows(db, Dataset) == 0 and not (settings.artifact_dir / "datasets").exists()
    part = settings.artifact_dir / "uploads" / f"{upload_id}.part"
    assert part.read_bytes() == CSV  # complete, for another try
    right = client.post("/api/v1/datasets", headers=alice, json={"upload": upload_id, "target": "label"})
    assert right.status_code == 201 and right.get_json()["target"] == "label"
    assert not part.exists()


def test_bytes_that_are_no_data_set_leave_nothing(client, alice, db, settings):
    upload_id = uploaded(client, alice, b"PK\x03\x04 not a zip at all", filename="pictures.zip")
    answer = client.post("/api/v1/datasets", headers=alice, json={"upload": upload_id})
    assert answer.status_code == 422
    assert rows(db, Dataset) == 0
    folder = settings.artifact_dir / "datasets"
    assert not folder.exists() or not any(folder.iterdir())


def test_a_source_from_an_upload(client, alice, db):
    code = b"print('hello from a resumable upload')\n"
    upload_id = uploaded(client, alice, code, filename="train.py", kind="source")
    as_dataset = client.post("/api/v1/datasets", headers=alice, json={"upload": upload_id})
    assert_error(as_dataset, 422, field="upload")
    source = client.post("/api/v1/sources", headers=alice, json={"upload": upload_id, "name": "hello"})
    assert source.status_code == 201, source.get_json()
    assert source.get_json()["name"] == "hello" and source.get_json()["files"] == [
        {"path": "train.py", "size": len(code)}
    ]
    with db.session() as session:
        assert Path(session.scalars(select(Source)).one().path, "train.py").read_bytes() == code
    assert rows(db, Upload) == 0


def test_a_course_data_set_from_an_upload(client, make_user, alice):
    root, prof = make_user("root", admin=True), make_user("prof")
    body = {"name": "DL-2026", "term_end": "2099-01-31", "instructors": ["prof"]}
    assert client.post("/api/v1/courses", headers=root, json=body).status_code == 201
    upload_id = uploaded(client, prof, CSV, name="aicup-train", target="label")
    published = client.post("/api/v1/courses/DL-2026/datasets", headers=prof, json={"upload": upload_id})
    assert published.status_code == 201, published.get_json()
    assert published.get_json()["name"] == "aicup-train"
    again = uploaded(client, prof, CSV)
    taken = client.post("/api/v1/courses/DL-2026/datasets", headers=prof, json={"upload": again, "name": "aicup-train"})
    assert_error(taken, 409)  # the course's names stay unique, whatever the bytes came by


def test_a_json_body_without_an_upload_says_how(client, alice):
    assert_error(client.post("/api/v1/datasets", headers=alice, json={"name": "x"}), 422, field="upload")
    assert_error(client.post("/api/v1/sources", headers=alice, json={"upload": 5}), 422, field="upload")
    missing = client.post("/api/v1/datasets", headers=alice, json={"upload": new_id()})
    assert_error(missing, 404, field="upload")


# -- the storage quota ---------------------------------------------------------------------------


def test_past_the_quota_an_upload_is_a_413_with_the_figures(client, alice, db):
    assert upload(client, alice, BIG_CSV, name="kept").status_code == 201
    set_quota(db, "alice", 1)
    for answer in (
        create(client, alice, len(BIG_CSV)),
        upload(client, alice, BIG_CSV),
        client.post(
            "/api/v1/sources",
            headers=alice,
            data={"file": (io.BytesIO(b"print(1)\n" * 60_000), "train.py")},
            content_type="multipart/form-data",
        ),
    ):
        error = assert_error(answer, 413, field="file", code="quota_exceeded")
        details = error["details"]
        assert details["quota_bytes"] == MB and details["upload_bytes"] >= 540_000
        assert details["used_bytes"] == len(BIG_CSV) and details["by_kind"]["datasets"] == len(BIG_CSV)
        assert f"you use {len(BIG_CSV) / 1024:.3g} KB (datasets" in error["message"]
        assert "of 1 MB allowed" in error["message"]
        assert "delete data sets or sources" in error["message"] and "ask an admin" in error["message"]
    assert rows(db, Dataset) == 1 and rows(db, Source) == 0 and rows(db, Upload) == 0
    set_quota(db, "alice", 2)  # an admin's larger quota: the same upload goes through
    assert upload(client, alice, BIG_CSV).status_code == 201


def test_uploads_under_way_count_and_finishing_one_is_not_counted_twice(client, alice, db):
    set_quota(db, "alice", 2)
    upload_id = uploaded(client, alice, BIG_CSV)
    # The first upload holds its length: one byte more than what is left is refused.
    assert_error(create(client, alice, 2 * MB - len(BIG_CSV) + 1), 413, code="quota_exceeded")
    assert create(client, alice, 2 * MB - len(BIG_CSV)).status_code == 201
    assert client.post("/api/v1/datasets", headers=alice, json={"upload": upload_id}).status_code == 201
    me = client.get("/api/v1/me", headers=alice).get_json()["storage"]
    assert me["by_kind"]["datasets"] == len(BIG_CSV) and me["by_kind"]["uploads"] == 2 * MB - len(BIG_CSV)
    assert me["used_bytes"] == me["quota_bytes"] == 2 * MB


def test_me_counts_each_kind_and_a_finished_jobs_folder_once(client, alice, db, run_queued, settings):
    job = client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).get_json()
    run_queued(job["id"])
    upload(client, alice, CSV)
    storage = client.get("/api/v1/me", headers=alice).get_json()["storage"]
    assert storage["quota_bytes"] == settings.storage_quota_mb * 1024 * 1024
    kinds = storage["by_kind"]
    assert set(kinds) == {"datasets", "sources", "jobs", "models", "uploads", "runs"}
    assert kinds["datasets"] == len(CSV) and kinds["models"] > 0 and kinds["jobs"] > 0  # the model file, the log
    assert storage["used_bytes"] == sum(kinds.values())
    with db.session() as session:
        measured = session.get(Job, job["id"]).storage_bytes
    assert measured == kinds["jobs"]
    (settings.artifact_dir / "jobs" / job["id"] / "later.bin").write_bytes(b"x" * 1000)
    # Measured once: what lands in an ended job's folder later is not walked for again.
    assert client.get("/api/v1/me", headers=alice).get_json()["storage"]["by_kind"]["jobs"] == measured


def test_prune_sweeps_expired_uploads_and_pruned_jobs_are_measured_again(client, alice, db, settings, run_queued):
    create(client, alice, 10)
    expired = create(client, alice, 20).get_json()["id"]
    with db.session() as session:
        session.execute(update(Upload).where(Upload.id == expired).values(expires_at=utcnow() - timedelta(hours=1)))
    job = client.post("/api/v1/jobs", json=IRIS_KNN, headers=alice).get_json()
    run_queued(job["id"])
    before = client.get("/api/v1/me", headers=alice).get_json()["storage"]["by_kind"]
    assert before["jobs"] > 0 and before["uploads"] == 30

    env = {"LABTRAIN_DATABASE_URL": settings.database_url, "LABTRAIN_ARTIFACT_DIR": str(settings.artifact_dir)}
    pruned = CliRunner().invoke(main, ["admin", "prune", "--older-than", "2100-01-01"], env=env)
    assert pruned.exit_code == 0, pruned.output
    out = pruned.stdout
    assert "removed 1 unfinished uploads older than 24 hours" in out
    after = client.get("/api/v1/me", headers=alice).get_json()["storage"]["by_kind"]
    assert after["uploads"] == 10 and after["jobs"] == 0 and after["models"] == 0


def test_a_resumable_image_folder_may_be_larger_than_a_request_and_is_unpacked_from_disk(client, alice, db, settings):
    rng = np.random.default_rng(0)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as folder:
        for index in range(52):  # noise does not compress: about 2.5 MB in all
            picture = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(picture, "PNG")
            folder.writestr(f"{('cat', 'dog')[index % 2]}/{index}.png", picture.getvalue())
    data = archive.getvalue()
    assert settings.max_upload_bytes < len(data) <= settings.max_resumable_upload_bytes

    too_big = client.post(
        "/api/v1/datasets",
        headers=alice,
        data={"file": (io.BytesIO(data), "pets.zip")},
        content_type="multipart/form-data",
    )
    assert too_big.status_code == 413  # one request may not carry it ...
    created = create(client, alice, len(data), filename="pets.zip")
    assert created.status_code == 201, created.get_json()
    location, half = created.headers["Location"], len(data) // 2
    assert patch(client, alice, location, 0, data[:half]).status_code == 204
    assert patch(client, alice, location, half, data[half:]).status_code == 204  # ... two chunks may
    upload_id = location.rsplit("/", 1)[1]
    dataset = client.post("/api/v1/datasets", headers=alice, json={"upload": upload_id, "name": "pets"})
    assert dataset.status_code == 201, dataset.get_json()
    assert dataset.get_json()["rows"] == 52 and rows(db, Upload) == 0
