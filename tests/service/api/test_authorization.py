"""Isolation between users: every route that takes an object answers another user's object
with exactly the 404 an unknown id gets, so ids reveal nothing; listings show only one's own.
In a course, its instructors and TAs see its jobs and models as their owner does (data sets
and sources stay their owner's); everyone else gets the unknown id's 404.

The probes are one table (PROBES, and COURSE_PROBES for the course routes, each with what
every role gets); a route added to the API without a probe fails `test_every_route_is_probed`."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select, update

from service.core import storage
from service.core.orm import CompetitionSubmission, Dataset, Job, JobEvent, Model, User, new_id
from service.tracking import store
from service.tracking.principal import UserPrincipal
from service.tracking.runs import job_run_id
from tests.service.api.test_api_datasets_models import submit_and_run, upload
from tests.support.api import IRIS_KNN, assert_error
from tests.support.digit_images import render

pytestmark = pytest.mark.fast  # the fast tier: no servers needed (tests/conftest.py)

IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
NUMERIC_CSV = ("a,b,label\n" + "\n".join(f"{i % 7},{i % 5},{int(i % 7 > 3)}" for i in range(60))).encode()
DENSE = {"layers": [{"type": "dense", "units": 2, "activation": "softmax"}]}
PNG = render(np.eye(28, dtype=np.uint8) * 255)


def _npz() -> bytes:
    x = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=(x[:, 0] > 0).astype(np.int64))
    return buffer.getvalue()


@dataclass(frozen=True)
class Probe:
    """One request on one kind of object: `{id}` in the path or the JSON body is its id."""

    name: str
    target: str  # finished | queued | model | csv | npz
    method: str
    path: str
    json: Any = None
    image: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    owner_status: int = 200  # what the owner gets: shows the probe reaches the object

    def send(self, client, headers: dict[str, str], object_id: str):
        kwargs: dict[str, Any] = {}
        if self.json is not None:
            kwargs["json"] = json.loads(json.dumps(self.json).replace("{id}", json.dumps(object_id)[1:-1]))
        if self.image:
            kwargs.update(data={"file": (io.BytesIO(PNG), "digit.png")}, content_type="multipart/form-data")
        return client.open(
            self.path.replace("{id}", object_id), method=self.method, headers={**headers, **self.headers}, **kwargs
        )


def _job_on(dataset: dict, owner_status: int, **spec) -> dict:
    return {"json": {"dataset": dataset, **spec}, "owner_status": owner_status}


PROBES = [
    Probe("get job", "finished", "GET", "/api/v1/jobs/{id}"),
    Probe("get queued job", "queued", "GET", "/api/v1/jobs/{id}"),
    Probe("job events", "finished", "GET", "/api/v1/jobs/{id}/events"),
    Probe("job events after", "finished", "GET", "/api/v1/jobs/{id}/events?after=1"),
    Probe("job events stream", "finished", "GET", "/api/v1/jobs/{id}/events", headers={"Accept": "text/event-stream"}),
    Probe("job log", "finished", "GET", "/api/v1/jobs/{id}/log"),
    Probe("cancel finished job", "finished", "POST", "/api/v1/jobs/{id}/cancel", owner_status=409),
    Probe("get model", "model", "GET", "/api/v1/models/{id}"),
    Probe("get model by job id", "finished", "GET", "/api/v1/models/{id}"),
    Probe("get model of a queued job", "queued", "GET", "/api/v1/models/{id}", owner_status=409),
    Probe("download model", "model", "GET", "/api/v1/models/{id}/download"),
    Probe("download model by job id", "finished", "GET", "/api/v1/models/{id}/download"),
    Probe("predict", "model", "POST", "/api/v1/models/{id}/predict", json={"instances": IRIS_ROWS}),
    Probe("predict by job id", "finished", "POST", "/api/v1/models/{id}/predict", json={"instances": IRIS_ROWS}),
    Probe("predict bad payload", "model", "POST", "/api/v1/models/{id}/predict", json={"rows": []}, owner_status=422),
    Probe("predict image", "model", "POST", "/api/v1/models/{id}/predict", image=True, owner_status=422),
    Probe("get csv dataset", "csv", "GET", "/api/v1/datasets/{id}"),
    Probe("get npz dataset", "npz", "GET", "/api/v1/datasets/{id}"),
    Probe("classic job on csv", "csv", "POST", "/api/v1/jobs", **_job_on({"id": "{id}"}, 201, algorithm="knn")),
    Probe(
        "classic job on csv, target",
        "csv",
        "POST",
        "/api/v1/jobs",
        **_job_on({"id": "{id}", "target": "b"}, 201, algorithm="knn"),
    ),
    Probe("classic job on npz", "npz", "POST", "/api/v1/jobs", **_job_on({"id": "{id}"}, 422, algorithm="knn")),
    Probe(
        "network job on csv",
        "csv",
        "POST",
        "/api/v1/jobs",
        **_job_on({"id": "{id}"}, 201, framework="pytorch", network=DENSE),
    ),
    Probe(
        "network job on npz",
        "npz",
        "POST",
        "/api/v1/jobs",
        **_job_on({"id": "{id}"}, 201, framework="tensorflow", network=DENSE),
    ),
    Probe("get source", "source", "GET", "/api/v1/sources/{id}"),
    Probe(
        "code job on a source", "source", "POST", "/api/v1/jobs", json={"code": {"source": "{id}"}}, owner_status=201
    ),
    Probe("job artifacts", "code", "GET", "/api/v1/jobs/{id}/artifacts"),
    Probe("job artifact", "code", "GET", "/api/v1/jobs/{id}/artifacts/result.txt"),
    Probe("notebook page", "code", "GET", "/api/v1/jobs/{id}/notebook"),
    Probe("job log from an offset", "finished", "GET", "/api/v1/jobs/{id}/log?offset=3"),
    # Jobs compared side by side (a repeated id is one column); a job that is no search has no trials.
    Probe("compare jobs", "finished", "GET", "/api/v1/compare?ids={id},{id}"),
    Probe("compare jobs as csv", "finished", "GET", "/api/v1/compare?ids={id},{id}&format=csv"),
    Probe("compare a search's trials", "finished", "GET", "/api/v1/compare?search={id}", owner_status=422),
    # Last: for the owner it cancels the queued job.
    Probe("cancel queued job", "queued", "POST", "/api/v1/jobs/{id}/cancel", owner_status=202),
]

LISTINGS = [
    "/api/v1/jobs",
    "/api/v1/jobs?status=queued",
    "/api/v1/jobs?status=succeeded",
    "/api/v1/models",
    "/api/v1/datasets",
    "/api/v1/queue",
    "/api/v1/sources",
    # MLflow runs that are no job: alice's own laptop runs, test_runs_list_and_compare_like_unknown_ones below.
    "/api/v1/runs",
    "/api/v1/runs?experiment=0",
]
# Routes that touch no existing object, with where they are checked.
OTHER_ROUTES = [
    ("GET", "/api/v1/algorithms"),
    # The caller's jobs as they change: tests/service/api/test_events_stream.py.
    ("GET", "/api/v1/events"),
    ("POST", "/api/v1/datasets"),
    ("POST", "/api/v1/sources"),
    ("GET", "/healthz"),
    # The dashboard's page and files hold no data: it calls the API with the user's token.
    ("GET", "/"),
    ("GET", "/dashboard/app.js"),
    # The OpenAPI document needs a token like all of /api (tests/service/api/test_openapi.py);
    # the docs page and its files hold no data.
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/static/docs.js"),
    # Readiness names no user; metrics count by user name, for the admin's Prometheus
    # (a token of its own when LABTRAIN_METRICS_TOKEN is set: tests/service/api/test_monitoring.py).
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    # What the server speaks, and a new upload of one's own: UPLOAD_PROBES below take it on.
    ("OPTIONS", "/api/v1/uploads"),
    ("POST", "/api/v1/uploads"),
    # MLflow's tracking API answers in MLflow's error shape, another user's run as a missing one
    # (RESOURCE_DOES_NOT_EXIST), a course's staff reading its runs: tests/service/tracking/.
    ("GET", "/api/2.0/mlflow/runs/get"),
    # MLflow's multipart uploads and presigned downloads: NOT_IMPLEMENTED for everyone, no run read
    # (tests/service/tracking/test_artifacts.py); MLFLOW_ARTIFACT_PROBES below take on the rest.
    ("POST", "/api/2.0/mlflow-artifacts/mpu/create/0/r/artifacts/x"),
    ("POST", "/api/2.0/mlflow-artifacts/mpu/complete/0/r/artifacts/x"),
    ("POST", "/api/2.0/mlflow-artifacts/mpu/abort/0/r/artifacts/x"),
    ("GET", "/api/2.0/mlflow-artifacts/presigned/0/r/artifacts/x"),
]


def build_world(client, headers, run_queued, settings) -> dict[str, str]:
    """A finished job with its model, a queued job, an uploaded CSV and an uploaded NPZ, a source
    and a code job on it with an artifact (put where a finished code job leaves them)."""
    finished = submit_and_run(client, headers, run_queued, IRIS_KNN)
    assert finished["status"] == "succeeded", finished["error"]
    queued = client.post("/api/v1/jobs", json=IRIS_KNN, headers=headers).get_json()
    csv = upload(client, headers, NUMERIC_CSV, target="label")
    npz = upload(client, headers, _npz(), "arrays.npz")
    assert csv.status_code == npz.status_code == 201
    source = client.post(
        "/api/v1/sources",
        data={"file": (io.BytesIO(b"print('hi')\n"), "train.py")},
        headers=headers,
        content_type="multipart/form-data",
    ).get_json()
    code = client.post("/api/v1/jobs", json={"code": {"source": source["id"]}}, headers=headers).get_json()
    outputs = storage.job_outputs_dir(settings, code["id"])
    outputs.mkdir(parents=True)
    (outputs / "result.txt").write_text("0.97\n")
    storage.notebook_page_path(settings, code["id"]).write_text("<p>the page its worker rendered</p>")
    return {
        "source": source["id"],
        "code": code["id"],
        "finished": finished["id"],
        "queued": queued["id"],
        "model": finished["result"]["model_id"],
        "csv": csv.get_json()["id"],
        "npz": npz.get_json()["id"],
    }


@pytest.fixture
def world(client, alice, run_queued, settings):
    return build_world(client, alice, run_queued, settings)


def comparable(response, object_id: str) -> tuple[int, str, dict]:
    body = response.get_json(silent=True)  # a HEAD answer has no body
    if body and "error" in body:
        body["error"]["message"] = body["error"]["message"].replace(object_id, "<id>")
    return response.status_code, response.mimetype, body


def snapshot(client, headers, ids: dict[str, str], db) -> dict[str, Any]:
    """Everything the owner can see of the objects, and how many rows each table holds."""
    view = {
        path: client.get(path, headers=headers).get_json()
        for path in [
            f"/api/v1/jobs/{ids['finished']}",
            f"/api/v1/jobs/{ids['queued']}",
            f"/api/v1/jobs/{ids['finished']}/events",
            f"/api/v1/jobs/{ids['queued']}/events",
            f"/api/v1/models/{ids['model']}",
            f"/api/v1/datasets/{ids['csv']}",
            f"/api/v1/datasets/{ids['npz']}",
            *LISTINGS,
        ]
    }
    view["predict"] = client.post(
        f"/api/v1/models/{ids['model']}/predict", headers=headers, json={"instances": IRIS_ROWS}
    ).get_json()
    with db.session() as session:
        view["rows"] = {
            t.__name__: session.scalar(select(func.count()).select_from(t)) for t in (Job, JobEvent, Model, Dataset)
        }
    return view


def test_another_users_objects_answer_like_unknown_ids(client, alice, bob, world, db):
    before = snapshot(client, alice, world, db)
    mismatches = []
    for probe in PROBES:
        foreign = probe.send(client, bob, world[probe.target])
        unknown_id = new_id()
        unknown = probe.send(client, bob, unknown_id)
        if foreign.status_code != 404 or comparable(foreign, world[probe.target]) != comparable(unknown, unknown_id):
            mismatches.append(
                f"{probe.name}: {foreign.status_code} {foreign.get_data(as_text=True)[:200]} "
                f"vs {unknown.status_code} {unknown.get_data(as_text=True)[:200]}"
            )
    assert not mismatches, "\n".join(mismatches)

    after = snapshot(client, alice, world, db)
    assert after == before
    assert after[f"/api/v1/jobs/{world['queued']}"]["status"] == "queued"
    assert after["predict"]["predictions"] == [0, 2]


@pytest.mark.parametrize("odd_id", ["a\x00b", "x" * 65, "\u00e9t\u00e9 .."])
def test_ids_that_cannot_exist_are_plain_404s(client, alice, world, odd_id):
    # Never a 500 (PostgreSQL refuses NUL bytes); spec ids longer than any id are a 422 naming the field.
    for probe in PROBES:
        response = probe.send(client, alice, odd_id)
        expected = 422 if probe.json and len(odd_id) > 64 and probe.path == "/api/v1/jobs" else 404
        named = "code.source" if probe.json and "code" in probe.json else "dataset.id"
        assert_error(response, expected, field=named if probe.path == "/api/v1/jobs" else "id")


@pytest.mark.parametrize("path", LISTINGS)
def test_listings_show_only_ones_own_objects(client, bob, world, path):
    response = client.get(path, headers=bob)
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert not [name for name, object_id in world.items() if object_id in text]


def test_the_probes_reach_the_objects_for_their_owner(client, alice, world):
    # Without this a probe could be 404 for everyone and the isolation test would prove nothing.
    answers = {p.name: p.send(client, alice, world[p.target]).status_code for p in PROBES}
    assert answers == {p.name: p.owner_status for p in PROBES}


def test_every_route_is_probed(app):
    adapter = app.url_map.bind("localhost")
    probed = {adapter.match(p.path.split("?")[0], method=p.method)[0] for p in PROBES}
    probed |= {adapter.match(p.path.format(course="DL").split("?")[0], method=p.method)[0] for p in COURSE_PROBES}
    competition_ids = {"course": "DL", "id": "x", "sid": "y", "test": "z"}
    probed |= {adapter.match(p.path.format(**competition_ids), method=p.method)[0] for p in COMPETITION_PROBES}
    probed |= {adapter.match(path.split("?")[0], method="GET")[0] for path in LISTINGS}
    probed |= {adapter.match(p.path, method=p.method)[0] for p in UPLOAD_PROBES}
    probed |= {adapter.match(path, method=method)[0] for method, path in OTHER_ROUTES}
    probed |= {adapter.match(p.path.split("?")[0], method=p.method)[0] for p in MLFLOW_ARTIFACT_PROBES}
    routes = {rule.endpoint for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    assert routes - probed == set(), "add a probe for each new route to PROBES (or LISTINGS, OTHER_ROUTES)"


def test_an_admin_sees_and_cancels_another_users_job(client, alice, make_user, world):
    admin = make_user("root", admin=True)
    assert client.get(f"/api/v1/jobs/{world['queued']}", headers=admin).get_json()["owner"] == "alice"
    listed = {
        path: client.get(path, headers=admin).get_data(as_text=True)
        for path in ("/api/v1/jobs", "/api/v1/models", "/api/v1/datasets")
    }
    assert all(
        world[name] in listed[path]
        for name, path in [
            ("finished", "/api/v1/jobs"),
            ("queued", "/api/v1/jobs"),
            ("model", "/api/v1/models"),
            ("csv", "/api/v1/datasets"),
            ("npz", "/api/v1/datasets"),
        ]
    )

    response = client.post(f"/api/v1/jobs/{world['queued']}/cancel", headers=admin)
    assert response.status_code == 202 and response.get_json()["status"] == "cancelled"
    job = client.get(f"/api/v1/jobs/{world['queued']}", headers=alice).get_json()
    assert job["status"] == "cancelled"
    events = client.get(f"/api/v1/jobs/{world['queued']}/events", headers=alice).get_json()["items"]
    assert events[-1]["data"] == {"status": "cancelled", "by": "root"}


def test_a_disabled_user_gets_401_everywhere(client, make_user, world, run_queued, db, settings):
    carol = make_user("carol")
    own = build_world(client, carol, run_queued, settings)
    with db.session() as session:
        session.execute(update(User).where(User.name == "carol").values(disabled=True))

    requests = [(f"{p.name} on own", p, own) for p in PROBES] + [(f"{p.name} on alice's", p, world) for p in PROBES]
    answers = {name: p.send(client, carol, ids[p.target]) for name, p, ids in requests}
    answers.update({path: client.get(path, headers=carol) for path in LISTINGS + ["/api/v1/algorithms"]})
    answers["upload"] = upload(client, carol, NUMERIC_CSV)
    answers["submit"] = client.post("/api/v1/jobs", json=IRIS_KNN, headers=carol)
    for name, response in answers.items():
        assert response.status_code == 401, name
        assert_error(response, 401, code="unauthorized")
    assert (
        client.get(f"/api/v1/jobs/{own['queued']}", headers=carol).get_json()["error"]["message"]
        == client.get("/api/v1/jobs", headers={"Authorization": "Bearer lt_unknown"}).get_json()["error"]["message"]
    )


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
def test_healthz_needs_no_token(client, headers):
    response = client.get("/healthz", headers=headers)
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


# A resumable upload (tus) is its owner's (and an admin's), like a data set: for anyone else it is
# an unknown id. In order: the last one deletes it for those who may.
TUS = {"Tus-Resumable": "1.0.0"}
UPLOAD_PROBES = [
    Probe("upload offset", "upload", "HEAD", "/api/v1/uploads/{id}", headers=TUS),
    Probe(
        "upload bytes",
        "upload",
        "PATCH",
        "/api/v1/uploads/{id}",
        headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
        owner_status=204,
    ),
    Probe("delete upload", "upload", "DELETE", "/api/v1/uploads/{id}", headers=TUS, owner_status=204),
]


def _new_upload(client, headers) -> str:
    meta = "filename " + base64.b64encode(b"data.csv").decode()
    answer = client.post("/api/v1/uploads", headers={**headers, **TUS, "Upload-Length": "10", "Upload-Metadata": meta})
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()["id"]


# The roles a course world has: who each is, and whether they see alice's course jobs as she does.
ROLES = {
    "admin": "root",
    "instructor": "prof",
    "ta": "tara",
    "owner": "alice",  # a student of DL-2026, who owns the world's objects
    "classmate": "sam",  # another student of DL-2026
    "other course": "oscar",  # a student of ML-2026
    "no course": "bob",
}
SEES_COURSE_JOBS = {"admin", "instructor", "ta", "owner"}
SEES_OWN_DATA = {"admin", "owner"}  # data sets and sources stay their owner's
JOB_TARGETS = {"finished", "queued", "model", "code"}


def expected_status(probe: Probe, role: str) -> int:
    allowed = SEES_COURSE_JOBS if probe.target in JOB_TARGETS else SEES_OWN_DATA
    return probe.owner_status if role in allowed else 404


@dataclass(frozen=True)
class CourseProbe:
    """One request on a course route; `{course}` in the path is DL-2026 (or, for the roles that
    must not learn it exists, compared with a course that does not)."""

    name: str
    method: str
    path: str
    json: Any
    expected: dict[str, int]  # by role
    upload: bytes | None = None  # sent as a multipart `file`, with `name` = the probe's name

    def send(self, client, headers: dict[str, str], course: str):
        if self.upload is not None:
            form = {"file": (io.BytesIO(self.upload), "data.csv"), "name": self.name.replace(" ", "-")}
            return client.open(self.path.format(course=course), method=self.method, headers=headers, data=form)
        return client.open(self.path.format(course=course), method=self.method, headers=headers, json=self.json)


def _by_role(admin: int, instructor: int, ta: int, student: int, outsider: int) -> dict[str, int]:
    return {
        "admin": admin,
        "instructor": instructor,
        "ta": ta,
        "owner": student,
        "classmate": student,
        "other course": outsider,
        "no course": outsider,
    }


MEMBER_ONLY = _by_role(200, 200, 200, 200, 404)
INSTRUCTOR_ONLY = _by_role(200, 200, 403, 403, 404)
COURSE_PROBES = [
    CourseProbe(
        "create a course",
        "POST",
        "/api/v1/courses",
        {"name": "NEW-1", "term_end": "2099-01-31", "instructors": ["prof"]},
        _by_role(201, 403, 403, 403, 403),
    ),
    CourseProbe("list courses", "GET", "/api/v1/courses", None, _by_role(200, 200, 200, 200, 200)),
    # Installing a built-in data set is an admin's (a name it fetches: tests/service/data/test_fetch_api.py).
    CourseProbe(
        "fetch a data set", "POST", "/api/v1/datasets/builtin/nosuch/fetch", None, _by_role(404, 403, 403, 403, 403)
    ),
    CourseProbe("me", "GET", "/api/v1/me", None, _by_role(200, 200, 200, 200, 200)),
    CourseProbe("get a course", "GET", "/api/v1/courses/{course}", None, MEMBER_ONLY),
    CourseProbe("change a course", "PATCH", "/api/v1/courses/{course}", {"share": 2}, INSTRUCTOR_ONLY),
    CourseProbe("roster", "POST", "/api/v1/courses/{course}/roster", {"students": [{"id": "newbie"}]}, INSTRUCTOR_ONLY),
    CourseProbe("add a member", "PUT", "/api/v1/courses/{course}/members/extra", {"role": "ta"}, INSTRUCTOR_ONLY),
    CourseProbe("remove a member", "DELETE", "/api/v1/courses/{course}/members/extra?role=ta", None, INSTRUCTOR_ONLY),
    CourseProbe(
        "publish a data set",
        "POST",
        "/api/v1/courses/{course}/datasets",
        None,
        _by_role(201, 201, 403, 403, 404),
        upload=NUMERIC_CSV,
    ),
    CourseProbe("course data sets", "GET", "/api/v1/courses/{course}/datasets", None, MEMBER_ONLY),
    CourseProbe("students' use", "GET", "/api/v1/courses/{course}/usage", None, _by_role(200, 200, 200, 403, 404)),
    CourseProbe(
        "grant hours",
        "POST",
        "/api/v1/courses/{course}/grants",
        {"user": "alice", "gpu_hours": 1},
        _by_role(201, 201, 403, 403, 404),
    ),
]


def build_courses(client, make_user) -> dict[str, dict[str, str]]:
    """DL-2026 (prof instructs, tara assists, alice and sam study) and ML-2026 (oscar studies),
    set up through the API; bob is in no course. Returns each role's headers."""
    headers = {role: make_user(name, admin=role == "admin") for role, name in ROLES.items()}
    make_user("extra")
    admin = headers["admin"]
    for name, instructors in (("DL-2026", ["prof"]), ("ML-2026", [])):
        created = client.post(
            "/api/v1/courses", headers=admin, json={"name": name, "term_end": "2099-01-31", "instructors": instructors}
        )
        assert created.status_code == 201, created.get_json()
    for course, user, role in (
        ("DL-2026", "tara", "ta"),
        ("DL-2026", "alice", "student"),
        ("DL-2026", "sam", "student"),
        ("ML-2026", "oscar", "student"),
    ):
        answer = client.put(f"/api/v1/courses/{course}/members/{user}", headers=admin, json={"role": role})
        assert answer.status_code == 200, answer.get_json()
    return headers


@pytest.mark.parametrize("role", list(ROLES))
def test_each_role_sees_course_jobs_as_the_rules_say(client, make_user, run_queued, settings, role):
    headers = build_courses(client, make_user)
    world = build_world(client, headers["owner"], run_queued, settings)
    assert client.get(f"/api/v1/jobs/{world['finished']}", headers=headers["owner"]).get_json()["course"] == "DL-2026"
    wrong = []
    for probe in PROBES:  # in order: the last one cancels the queued job
        answer = probe.send(client, headers[role], world[probe.target])
        expected = expected_status(probe, role)
        if answer.status_code != expected:
            wrong.append(f"{probe.name}: {answer.status_code}, expected {expected}")
        elif expected == 404:  # exactly what an unknown id gets
            unknown_id = new_id()
            unknown = probe.send(client, headers[role], unknown_id)
            if comparable(answer, world[probe.target]) != comparable(unknown, unknown_id):
                wrong.append(f"{probe.name}: {answer.get_data(as_text=True)[:200]} vs an unknown id's")
    assert not wrong, "\n".join(wrong)


def wrong_answers(probes, role: str, ask, ask_unknown) -> list[str]:
    """Each probe's answer for `role` against what it expects; where that is a 404,
    `ask_unknown(probe)` gives (the same request on an object that does not exist, the id
    asked, the unknown id), or None, and both answers must read the same."""
    wrong = []
    for probe in probes:
        answer, expected = ask(probe), probe.expected[role]
        if answer.status_code != expected:
            wrong.append(
                f"{probe.name}: {answer.status_code} {answer.get_data(as_text=True)[:200]}, expected {expected}"
            )
        elif expected >= 400:
            assert_error(answer, expected)
        if expected == 404 and (unknown := ask_unknown(probe)) is not None:
            other, asked_id, unknown_id = unknown
            if comparable(answer, asked_id) != comparable(other, unknown_id):
                wrong.append(f"{probe.name}: {answer.get_data(as_text=True)[:200]} vs an unknown one's")
    return wrong


@pytest.mark.parametrize("role", list(ROLES))
def test_each_role_gets_what_the_course_routes_allow(client, make_user, role):
    headers = build_courses(client, make_user)
    wrong = wrong_answers(
        COURSE_PROBES,
        role,
        lambda probe: probe.send(client, headers[role], "DL-2026"),
        # a course one is not in answers like one that does not exist
        lambda probe: (probe.send(client, headers[role], "NO-SUCH-COURSE"), "DL-2026", "NO-SUCH-COURSE"),
    )
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("role", list(ROLES))
def test_listings_show_course_jobs_to_the_courses_staff_only(client, make_user, run_queued, settings, role):
    headers = build_courses(client, make_user)
    world = build_world(client, headers["owner"], run_queued, settings)
    listed = {path: client.get(path, headers=headers[role]).get_data(as_text=True) for path in LISTINGS}
    for name, object_id in world.items():
        path = "/api/v1/models" if name == "model" else "/api/v1/jobs" if name in JOB_TARGETS else None
        shown = [p for p, text in listed.items() if object_id in text and p != "/api/v1/queue"]
        if path is None:  # data sets and sources: their owner's and an admin's (a code job's spec names its source)
            shown = [p for p in shown if p in ("/api/v1/datasets", "/api/v1/sources")]
            assert bool(shown) == (role in SEES_OWN_DATA), (name, shown)
        else:
            assert (path in shown) == (role in SEES_COURSE_JOBS), (name, shown)


# Competition routes: `{course}` is DL-2026, `{id}` its competition, `{sid}` a scored submission
# of alice's, `{test}` the test set prof uploaded. Outsiders get what an unknown id gets.
COMPETITION_CSV = ("id,a,b,label\n" + "\n".join(f"{i},{i % 7},{i % 5},c{i % 2}" for i in range(40))).encode()
STAFF_ONLY = _by_role(200, 200, 200, 403, 404)
STUDENT_ONLY = _by_role(403, 403, 403, 422, 404)  # a student's empty model id: the spec's 422


@dataclass(frozen=True)
class CompetitionProbe:
    name: str
    method: str
    path: str
    json: Any
    expected: dict[str, int]

    def send(self, client, headers: dict[str, str], ids: dict[str, str]):
        body = json.loads(json.dumps(self.json).replace("{test}", ids["test"])) if self.json is not None else None
        return client.open(self.path.format(**ids), method=self.method, headers=headers, json=body)


def _competition(test: str) -> dict[str, Any]:
    return {
        "name": "probe-new",
        "metric": "accuracy",
        "test": test,
        "target": "label",
        "closes_at": "2099-01-01T00:00Z",
    }


COMPETITION_PROBES = [
    CompetitionProbe(
        "create a competition",
        "POST",
        "/api/v1/courses/{course}/competitions",
        _competition("{test}"),
        _by_role(201, 201, 403, 403, 404),
    ),
    CompetitionProbe("list competitions", "GET", "/api/v1/courses/{course}/competitions", None, MEMBER_ONLY),
    CompetitionProbe("get a competition", "GET", "/api/v1/competitions/{id}", None, MEMBER_ONLY),
    CompetitionProbe("test inputs", "GET", "/api/v1/competitions/{id}/test-inputs", None, MEMBER_ONLY),
    CompetitionProbe("submit", "POST", "/api/v1/competitions/{id}/submissions", {"model": ""}, STUDENT_ONLY),
    CompetitionProbe("submissions", "GET", "/api/v1/competitions/{id}/submissions", None, MEMBER_ONLY),
    CompetitionProbe(
        "select",
        "POST",
        "/api/v1/competitions/{id}/submissions/{sid}/select",
        None,
        {**_by_role(404, 404, 404, 404, 404), "owner": 200},
    ),
    CompetitionProbe("leaderboard", "GET", "/api/v1/competitions/{id}/leaderboard", None, MEMBER_ONLY),
    CompetitionProbe("grades", "GET", "/api/v1/competitions/{id}/grades.csv", None, STAFF_ONLY),
]


def build_competition(client, headers, db) -> dict[str, str]:
    test = upload(client, headers["instructor"], COMPETITION_CSV, "hidden.csv", target="label").get_json()["id"]
    body = {**_competition(test), "name": "aicup"}
    created = client.post("/api/v1/courses/DL-2026/competitions", headers=headers["instructor"], json=body)
    assert created.status_code == 201, created.get_json()
    with db.session() as session:
        alice = session.scalar(select(User).where(User.name == "alice"))
        submission = CompetitionSubmission(
            competition_id=created.get_json()["id"], user_id=alice.id, status="scored", public_score=0.5
        )
        session.add(submission)
        session.flush()
        sid = submission.id
    return {"course": "DL-2026", "id": created.get_json()["id"], "sid": sid, "test": test}


@pytest.mark.parametrize("role", list(ROLES))
def test_each_role_gets_what_the_competition_routes_allow(client, make_user, db, role):
    headers = build_courses(client, make_user)
    ids = build_competition(client, headers, db)
    unknown = {**ids, "course": "NO-SUCH-COURSE", "id": new_id()}

    def ask_unknown(probe):  # a competition one cannot see answers like none at all
        if probe.name == "select":
            return None
        key = "course" if "{course}" in probe.path else "id"
        return probe.send(client, headers[role], unknown), ids[key], unknown[key]

    wrong = wrong_answers(COMPETITION_PROBES, role, lambda probe: probe.send(client, headers[role], ids), ask_unknown)
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("role", list(ROLES))
def test_each_role_reaches_an_upload_as_the_rules_say(client, make_user, role):
    headers = build_courses(client, make_user)
    upload_id = _new_upload(client, headers["owner"])
    wrong = []
    for probe in UPLOAD_PROBES:
        answer = probe.send(client, headers[role], upload_id)
        expected = probe.owner_status if role in SEES_OWN_DATA else 404
        if answer.status_code != expected:
            wrong.append(f"{probe.name}: {answer.status_code}, expected {expected}")
        elif expected == 404:
            unknown_id = new_id()
            if comparable(answer, upload_id) != comparable(probe.send(client, headers[role], unknown_id), unknown_id):
                wrong.append(f"{probe.name}: {answer.get_data(as_text=True)[:200]} vs an unknown id's")
    assert not wrong, "\n".join(wrong)


# MLflow's artifact routes (service/api/mlflow_artifacts.py): a run's artifacts are read by who
# may read the run and written by its owner; for anyone else the run is a missing one, the same
# 404 in MLflow's shape. {id} is a run id: "run" a run from alice's laptop, "job run" her job's.
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
MLFLOW_ARTIFACT_PROBES = [
    Probe("list a run's artifacts", "run", "GET", ARTIFACTS + "?path=0/{id}/artifacts"),
    Probe("list a job's run's artifacts", "job run", "GET", ARTIFACTS + "?path=1/{id}/artifacts/sub"),
    Probe("download a run's artifact", "run", "GET", ARTIFACTS + "/0/{id}/artifacts/seen.txt"),
    Probe("download a job's run's artifact", "job run", "GET", ARTIFACTS + "/1/{id}/artifacts/sub/seen.txt"),
    Probe("upload to a run", "run", "PUT", ARTIFACTS + "/0/{id}/artifacts/new.txt", json="bytes"),
    Probe("upload to a job's run", "job run", "PUT", ARTIFACTS + "/1/{id}/artifacts/sub/new.txt", json="bytes"),
    Probe("delete a run's artifact", "run", "DELETE", ARTIFACTS + "/0/{id}/artifacts/new.txt"),
    Probe("delete a job's run's artifacts", "job run", "DELETE", ARTIFACTS + "/1/{id}/artifacts/sub"),
]


def build_runs(client, headers, db, settings) -> dict[str, str]:
    """Alice's run from her laptop and her queued job's run, each with an artifact seen.txt."""
    with db.session() as session:
        alice = session.query(User).filter_by(name="alice").one()
        run = store.create_run(session, UserPrincipal(alice), "0", None, [], "laptop").info.run_id
        session.commit()
    job = client.post("/api/v1/jobs", json=IRIS_KNN, headers=headers).get_json()["id"]
    ids = {"run": run, "job run": job_run_id(job)}
    for path in (f"0/{run}/artifacts/seen.txt", f"1/{job_run_id(job)}/artifacts/sub/seen.txt"):
        assert client.put(f"{ARTIFACTS}/{path}", data=b"seen", headers=headers).status_code == 200
    return ids


def artifact_files(settings) -> dict[str, bytes]:
    return {str(p.relative_to(settings.artifact_dir)): p.read_bytes() for p in settings.artifact_dir.rglob("*.txt")}


def test_another_users_runs_artifacts_answer_like_unknown_runs(client, alice, bob, db, settings):
    ids = build_runs(client, alice, db, settings)
    before = artifact_files(settings)
    unknown_run = "f" * 32  # could be a run's id; there is none
    mismatches = []
    for probe in MLFLOW_ARTIFACT_PROBES:
        foreign, unknown = probe.send(client, bob, ids[probe.target]), probe.send(client, bob, unknown_run)
        answers = [
            (r.status_code, r.get_json()["error_code"], r.get_json()["message"].replace(run, "<run>"))
            for r, run in ((foreign, ids[probe.target]), (unknown, unknown_run))
        ]
        if answers[0] != answers[1] or answers[0][:2] != (404, "RESOURCE_DOES_NOT_EXIST"):
            mismatches.append(f"{probe.name}: {answers}")
    assert not mismatches, "\n".join(mismatches)
    assert artifact_files(settings) == before

    # Without this a probe could be 404 for everyone and the test above would prove nothing.
    answers = {p.name: p.send(client, alice, ids[p.target]).status_code for p in MLFLOW_ARTIFACT_PROBES}
    assert answers == {p.name: p.owner_status for p in MLFLOW_ARTIFACT_PROBES}


def test_runs_list_and_compare_like_unknown_ones(client, alice, bob, db, settings):
    """GET /api/v1/runs lists alice's laptop run to her alone; compared by bob, it (or her job's
    run id) is the 404 an unknown id gets, naming the id."""
    ids = build_runs(client, alice, db, settings)
    run, job = ids["run"], ids["job run"][:22]
    assert [item["id"] for item in client.get("/api/v1/runs", headers=alice).get_json()["items"]] == [run]
    assert client.get("/api/v1/runs", headers=bob).get_json() == {"items": [], "next_cursor": None}
    own = client.get(f"/api/v1/compare?ids={run},{job}", headers=alice).get_json()
    assert [item["kind"] for item in own["items"]] == ["run", "job"]
    unknown_run = "f" * 32
    for object_id in (run, ids["job run"]):
        foreign = assert_error(client.get(f"/api/v1/compare?ids={object_id},{job}", headers=bob), 404, field="id")
        unknown = assert_error(client.get(f"/api/v1/compare?ids={unknown_run},{job}", headers=bob), 404, field="id")
        assert foreign["message"].replace(object_id, "<id>") == unknown["message"].replace(unknown_run, "<id>")
