"""A course's data sets: its instructors publish them (TAs and students may not, outsiders
learn nothing), every member trains on them as `{"course", "name"}`, and anyone else gets
exactly what an unknown data set gets. A closed course takes no new ones. A code job reads
its course data set read-only, in a real sandbox."""

from __future__ import annotations

import io
import textwrap

import pytest

from service.sandbox.probe import capabilities
from tests.service.api.test_api_datasets_models import submit_and_run
from tests.support.api import assert_error

CSV = ("a,b,label\n" + "\n".join(f"{i % 7},{(i * 3) % 5},{int(i % 7 > 3)}" for i in range(80))).encode()
REF = {"course": "DL-2026", "name": "aicup-train"}


def publish(client, headers, name: str | None = "aicup-train", course: str = "DL-2026", data: bytes = CSV, **form):
    fields = {"file": (io.BytesIO(data), "train.csv"), **form}
    if name is not None:
        fields["name"] = name
    return client.post(
        f"/api/v1/courses/{course}/datasets", headers=headers, data=fields, content_type="multipart/form-data"
    )


@pytest.fixture
def members(client, course, root, alice, bob):
    """DL-2026's staff, alice its student, bob in no course, and aicup-train published by prof."""
    assert (
        client.put("/api/v1/courses/DL-2026/members/alice", headers=root, json={"role": "student"}).status_code == 200
    )
    published = publish(client, course["prof"], target="label")
    assert published.status_code == 201, published.get_json()
    return {**course, "alice": alice, "bob": bob, "root": root, "dataset": published.get_json()}


@pytest.mark.fast
def test_an_instructor_publishes_and_members_list_it(client, members):
    dataset = members["dataset"]
    assert dataset["course"] == "DL-2026" and dataset["name"] == "aicup-train" and dataset["rows"] == 80
    assert dataset["target"] == "label" and dataset["kind"] == "csv"
    for who in ("prof", "tara", "alice", "root"):
        listed = client.get("/api/v1/courses/DL-2026/datasets", headers=members[who])
        assert listed.status_code == 200 and [d["id"] for d in listed.get_json()["items"]] == [dataset["id"]], who
    # Its owner's own views say which course it belongs to.
    assert client.get(f"/api/v1/datasets/{dataset['id']}", headers=members["prof"]).get_json()["course"] == "DL-2026"
    own = client.get("/api/v1/datasets", headers=members["prof"]).get_json()["items"]
    assert [d["course"] for d in own if d["id"] == dataset["id"]] == ["DL-2026"]
    # A student reads it only through jobs: the upload itself stays its owner's.
    assert_error(client.get(f"/api/v1/datasets/{dataset['id']}", headers=members["alice"]), 404, field="id")
    # An admin publishes too.
    assert publish(client, members["root"], "aicup-extra").status_code == 201


@pytest.mark.fast
def test_tas_students_and_outsiders_cannot_publish(client, members):
    assert_error(publish(client, members["tara"], "other"), 403, code="forbidden")
    assert_error(publish(client, members["alice"], "other"), 403, code="forbidden")
    outsider = assert_error(publish(client, members["bob"], "other"), 404, field="name")
    unknown = assert_error(publish(client, members["bob"], "other", course="NO-SUCH"), 404, field="name")
    assert outsider["message"].replace("DL-2026", "<c>") == unknown["message"].replace("NO-SUCH", "<c>")
    assert_error(client.get("/api/v1/courses/DL-2026/datasets", headers=members["bob"]), 404, field="name")
    listed = client.get("/api/v1/courses/DL-2026/datasets", headers=members["prof"]).get_json()["items"]
    assert [d["name"] for d in listed] == ["aicup-train"]


@pytest.mark.fast
def test_names_are_unique_in_a_course_and_well_formed(client, members):
    error = assert_error(publish(client, members["prof"]), 409, field="name", code="dataset_exists")
    assert "aicup-train" in error["message"]
    assert_error(publish(client, members["prof"], None), 422, field="name")
    assert_error(publish(client, members["prof"], "two words"), 422, field="name")
    assert_error(publish(client, members["prof"], "x" * 65), 422, field="name")
    assert_error(publish(client, members["prof"], "bad-file", data=b"PK\x03\x04broken"), 422, field="file")
    # The same name in another course, or among a user's own uploads, is no clash.
    root = members["root"]
    made = client.post("/api/v1/courses", headers=root, json={"name": "ML-2026", "term_end": "2099-01-31"})
    assert made.status_code == 201
    assert publish(client, root, course="ML-2026").status_code == 201


@pytest.mark.fast
def test_a_closed_course_takes_no_new_data_sets(client, members):
    assert (
        client.patch("/api/v1/courses/DL-2026", headers=members["root"], json={"term_end": "2020-06-30"}).status_code
        == 200
    )
    error = assert_error(publish(client, members["prof"], "late"), 409, field="course", code="course_closed")
    assert "2020-06-30" in error["message"]
    # What it published stays listed.
    assert len(client.get("/api/v1/courses/DL-2026/datasets", headers=members["alice"]).get_json()["items"]) == 1


@pytest.mark.fast
def test_a_student_trains_a_classic_job_on_it(client, members, run_queued):
    job = submit_and_run(client, members["alice"], run_queued, {"dataset": REF, "algorithm": "knn"})
    assert job["status"] == "succeeded", job["error"]
    assert job["spec"]["dataset"] == {**REF, "id": members["dataset"]["id"], "target": "label"}
    assert job["metrics"]["accuracy"] > 0.5 and job["course"] == "DL-2026"
    # Its id names it as well, for a member; the spec still says which course's it is.
    by_id = client.post(
        "/api/v1/jobs", headers=members["tara"], json={"dataset": {"id": members["dataset"]["id"]}, "algorithm": "knn"}
    )
    assert by_id.status_code == 201 and by_id.get_json()["spec"]["dataset"]["name"] == "aicup-train"
    # A stored spec submitted again (course, name and its id) is the same data set.
    again = client.post(
        "/api/v1/jobs", headers=members["alice"], json={"dataset": job["spec"]["dataset"], "algorithm": "knn"}
    )
    assert again.status_code == 201, again.get_json()


def _answers(client, headers, dataset, **spec):
    return client.post("/api/v1/jobs", headers=headers, json={"dataset": dataset, **spec})


SPECS = {
    "classic": {"algorithm": "knn"},
    "network": {
        "framework": "pytorch",
        "network": {"layers": [{"type": "dense", "units": 2, "activation": "softmax"}]},
    },
}


@pytest.mark.fast
@pytest.mark.parametrize("family", list(SPECS))
def test_anyone_else_gets_what_an_unknown_data_set_gets(client, members, family):
    spec = SPECS[family]
    outsider = assert_error(_answers(client, members["bob"], REF, **spec), 404, field="dataset.name")
    unknown_name = assert_error(_answers(client, members["alice"], {**REF, "name": "nope"}, **spec), 404)
    unknown_course = assert_error(_answers(client, members["bob"], {**REF, "course": "NOPE"}, **spec), 404)
    assert outsider == {**unknown_name, "message": unknown_name["message"].replace("nope", "aicup-train")}
    assert outsider == {**unknown_course, "message": unknown_course["message"].replace("NOPE", "DL-2026")}
    dataset_id = members["dataset"]["id"]
    by_id = assert_error(_answers(client, members["bob"], {"id": dataset_id}, **spec), 404, field="dataset.id")
    unknown_id = assert_error(_answers(client, members["bob"], {"id": "0" * 22}, **spec), 404)
    assert by_id == {**unknown_id, "message": unknown_id["message"].replace("0" * 22, dataset_id)}
    # A stored spec's id must be the named data set's.
    mismatched = {**REF, "id": "0" * 22}
    assert_error(_answers(client, members["alice"], mismatched, **spec), 404, field="dataset.name")
    assert_error(_answers(client, members["alice"], {"course": "DL-2026"}, **spec), 422, field="dataset")
    assert _answers(client, members["alice"], REF, **spec).status_code == 201


def test_a_student_trains_a_network_on_it(client, members, run_queued):
    job = submit_and_run(
        client,
        members["alice"],
        run_queued,
        {"dataset": REF, **SPECS["network"], "training": {"epochs": 3, "batch_size": 16}},
    )
    assert job["status"] == "succeeded", job["error"]
    assert job["spec"]["dataset"] == {**REF, "id": members["dataset"]["id"], "target": "label"}
    assert job["spec"]["task"] == "classification" and "accuracy" in job["metrics"]


# Reads the course's file, tries to change it, and looks for the other course data set's file.
READER = """
    import errno, os, sys
    path = os.environ["JOB_DATASET"]
    with open(path) as f:
        print("rows", len(f.read().splitlines()) - 1)
    for mode in ("a", "w"):
        try:
            with open(path, mode) as f:
                f.write("0,0,0\\n")
            print("wrote", mode)
        except OSError as exc:
            print("refused", mode, errno.errorcode[exc.errno])
    try:
        os.unlink(path)
        print("deleted")
    except OSError as exc:
        print("refused unlink", errno.errorcode[exc.errno])
    print("data", sorted(os.listdir(os.path.dirname(path))))
    print("other file visible", os.path.exists(sys.argv[1]))
"""


def test_a_code_job_reads_it_and_cannot_change_it(client, members, run_queued, settings):
    found = capabilities(settings)
    if "sandbox_error" in found:
        pytest.skip(f"no sandbox on this machine: {found['sandbox_error']}")
    other = publish(client, members["prof"], "aicup-valid").get_json()
    source = client.post(
        "/api/v1/sources",
        headers=members["alice"],
        data={"file": (io.BytesIO(textwrap.dedent(READER).encode()), "read.py")},
        content_type="multipart/form-data",
    ).get_json()
    dataset_id = members["dataset"]["id"]
    with_path = {
        "code": {"source": source["id"], "args": [str(settings.artifact_dir / "datasets" / f"{other['id']}.csv")]}
    }
    job = submit_and_run(client, members["alice"], run_queued, {"dataset": REF, **with_path})
    log = client.get(f"/api/v1/jobs/{job['id']}/log", headers=members["alice"]).get_data(as_text=True)
    assert job["status"] == "succeeded", (job["error"], log)
    assert job["spec"]["dataset"] == {**REF, "id": dataset_id}
    assert "rows 80" in log
    assert "wrote" not in log and "deleted" not in log, log
    # Read-only twice over: the bind mount (EROFS) and the file's permissions (EACCES).
    assert all(f"refused {what} E" in log for what in ("a", "w", "unlink")), log
    assert f"data ['{dataset_id}.csv']" in log and "other file visible False" in log
    assert (settings.artifact_dir / "datasets" / f"{dataset_id}.csv").read_bytes() == CSV
