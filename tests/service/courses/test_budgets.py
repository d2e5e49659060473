"""Course budgets through the API and real dispatcher rounds: a student whose hours are spent
has a job that waits queued saying why, a grant lets the next round release it, and what /me
and the course's usage report equals the jobs' run time (attempts put back in the queue and
a GPU's share included); the weekly cap; a job no budget could cover is a 422; a closed course
takes no job."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update

from service.core.broker import make_celery
from service.core.orm import Course, Job, User, utcnow
from service.courses.budgets import week_start
from service.dispatcher import Dispatcher
from service.jobs import lifecycle
from tests.support.api import IRIS_KNN, assert_error
from tests.support.workers import heartbeat

pytestmark = pytest.mark.fast  # the fast tier: no servers needed (tests/conftest.py)

GPU_NET = {
    "dataset": "iris",
    "framework": "pytorch",
    "network": {"layers": [{"type": "dense", "units": 3, "activation": "softmax"}]},
    "device": "gpu",
}


@pytest.fixture
def dispatcher(settings):
    return Dispatcher(settings, make_celery(settings), name="test-dispatcher")


@pytest.fixture
def people(make_user):
    return {"root": make_user("root", admin=True), "prof": make_user("prof"), "alice": make_user("alice")}


def make_course(client, db, people, budget, name="DL-2026") -> None:
    """The course (begun three hours ago, so runs inside it count) with alice as its student."""
    made = client.post(
        "/api/v1/courses",
        headers=people["root"],
        json={"name": name, "term_end": "2099-01-31", "instructors": ["prof"], "budget": budget},
    )
    assert made.status_code == 201, made.get_json()
    enrolled = client.put(f"/api/v1/courses/{name}/members/alice", headers=people["prof"], json={"role": "student"})
    assert enrolled.status_code == 200, enrolled.get_json()
    with db.session() as session:
        session.execute(update(Course).where(Course.name == name).values(created_at=utcnow() - timedelta(hours=3)))


def submit(client, headers, spec=IRIS_KNN) -> str:
    answer = client.post("/api/v1/jobs", json=spec, headers=headers)
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()["id"]


def ran(db, job_id: str, hours_ago: float, hours: float, **values) -> None:
    """The job ran for `hours`, ending `hours_ago` (written as a worker's run would leave it)."""
    end = utcnow() - timedelta(hours=hours_ago)
    with db.session() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status=lifecycle.SUCCEEDED, started_at=end - timedelta(hours=hours), finished_at=end, **values)
        )


def round_(db, dispatcher) -> list[str]:
    with db.session() as session:
        return dispatcher.run_round(session)


def held_hours(db, owner: str, queue: str) -> float:
    """What the rows say the owner's jobs held: run times (times the GPU's share) plus earlier attempts."""
    with db.session() as session:
        rows = session.execute(
            select(Job.started_at, Job.finished_at, Job.gpu_share, Job.earlier_device_s)
            .join(User, User.id == Job.owner_id)
            .where(User.name == owner, Job.queue == queue)
        ).all()
    seconds = sum(
        ((end - start).total_seconds() * (share or 1.0) if start and end else 0.0) + earlier
        for start, end, share, earlier in rows
    )
    return round(seconds / 3600, 4)


def my_course(client, headers) -> dict:
    (course,) = client.get("/api/v1/me", headers=headers).get_json()["courses"]
    return course


def test_a_spent_budget_holds_the_job_until_a_grant_and_the_use_is_the_run_time(client, db, dispatcher, people):
    make_course(client, db, people, {"cpu_hours": 1.5, "gpu_hours": 2})
    heartbeat(db, "w1", "cpu", concurrency=4)
    first = submit(client, people["alice"])
    ran(db, first, hours_ago=1, hours=1.5)
    held = submit(client, people["alice"])

    assert round_(db, dispatcher) == []  # a free slot, but no hours left
    job = client.get(f"/api/v1/jobs/{held}", headers=people["alice"]).get_json()
    assert job["status"] == "queued"
    assert job["waiting"] == {"reason": "budget", "message": "budget: 0 of 1.5 CPU-hours left this term"}
    me = my_course(client, people["alice"])
    assert (
        me["used"]
        == {"gpu_hours": 0.0, "cpu_hours": held_hours(db, "alice", "cpu")}
        == {
            "gpu_hours": 0.0,
            "cpu_hours": 1.5,
        }
    )
    assert me["left"] == {"gpu_hours": 2.0, "cpu_hours": 0.0}
    assert [(q["id"], q["waiting"]["reason"], q["estimated_start"]) for q in me["queue"]] == [(held, "budget", None)]
    assert round_(db, dispatcher) == []  # still held: nothing changed

    # A TA cannot grant; the instructor can, and the next round releases the job.
    assert_error(
        client.post("/api/v1/courses/DL-2026/grants", headers=people["alice"], json={"user": "alice", "cpu_hours": 1}),
        403,
    )
    granted = client.post(
        "/api/v1/courses/DL-2026/grants", headers=people["prof"], json={"user": "alice", "cpu_hours": 0.5}
    )
    assert granted.status_code == 201, granted.get_json()
    assert granted.get_json()["granted"] == {"gpu_hours": 0.0, "cpu_hours": 0.5}
    assert granted.get_json()["total"] == {"gpu_hours": 2.0, "cpu_hours": 2.0}
    assert granted.get_json()["left"] == {"gpu_hours": 2.0, "cpu_hours": 0.5}
    assert round_(db, dispatcher) == [held]
    job = client.get(f"/api/v1/jobs/{held}", headers=people["alice"]).get_json()
    assert job["waiting"] is None and job["status"] == "queued"

    ran(db, held, hours_ago=0, hours=0.25)
    me = my_course(client, people["alice"])
    assert me["used"]["cpu_hours"] == held_hours(db, "alice", "cpu") == 1.75
    assert me["left"]["cpu_hours"] == 0.25 and me["granted"]["cpu_hours"] == 0.5
    (row,) = client.get("/api/v1/courses/DL-2026/usage", headers=people["prof"]).get_json()["items"]
    assert row["user"] == "alice" and row["jobs"] == 2
    assert (row["used"], row["left"], row["granted"]) == (me["used"], me["left"], me["granted"])
    assert row["budget"] == {"gpu_hours": 2.0, "cpu_hours": 1.5, "week_gpu_hours": None}


def test_time_before_a_requeue_counts_and_a_gpu_second_by_its_share(client, db, people):
    make_course(client, db, people, {"cpu_hours": 10, "gpu_hours": 10})
    job_id = submit(client, people["alice"])
    with db.session() as session:
        assert lifecycle.claim(session, job_id, "w1") == 1
        session.execute(update(Job).where(Job.id == job_id).values(started_at=utcnow() - timedelta(minutes=10)))
    with db.session() as session:  # preempted: the attempt is given back, its time kept
        assert lifecycle.requeue_preempted(session, job_id, attempt=1)
    with db.session() as session:
        assert lifecycle.claim(session, job_id, "w1") == 1
        session.execute(update(Job).where(Job.id == job_id).values(started_at=utcnow() - timedelta(minutes=5)))
    with db.session() as session:  # its worker lost: back in the queue again, the time kept again
        lifecycle.requeue(session, session.get(Job, job_id), "worker w1 lost")
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job.status == "queued" and job.started_at is None
        assert job.earlier_device_s == pytest.approx(15 * 60, abs=5)
    assert my_course(client, people["alice"])["used"]["cpu_hours"] == held_hours(db, "alice", "cpu")
    with db.session() as session:
        assert lifecycle.claim(session, job_id, "w1") == 2  # a lost worker's attempt counts; a preemption's not
    ran(db, job_id, hours_ago=0, hours=0.5)

    # A GPU job that held half a GPU for an hour used half a GPU-hour.
    gpu_job = submit(client, people["alice"], GPU_NET)
    ran(db, gpu_job, hours_ago=1, hours=1, gpu_share=0.5)
    me = my_course(client, people["alice"])
    assert me["used"] == {"gpu_hours": held_hours(db, "alice", "gpu"), "cpu_hours": held_hours(db, "alice", "cpu")}
    assert me["used"]["gpu_hours"] == 0.5
    assert me["used"]["cpu_hours"] == pytest.approx(0.5 + 15 / 60, abs=0.01)


def test_a_weekly_cap_holds_gpu_jobs_until_monday(client, db, dispatcher, people):
    make_course(client, db, people, {"gpu_hours": 10, "week_gpu_hours": 0.01})
    monday = week_start(utcnow())
    with db.session() as session:  # the course began last week
        session.execute(update(Course).values(created_at=monday - timedelta(days=3)))
    last_week = submit(client, people["alice"], GPU_NET)
    this_week = submit(client, people["alice"], GPU_NET)
    with db.session() as session:
        for job_id, start, end in (
            (last_week, monday - timedelta(hours=2), monday - timedelta(hours=1)),
            (this_week, utcnow() - timedelta(seconds=60), utcnow()),
        ):
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(status="succeeded", started_at=start, finished_at=end, gpu_share=1.0)
            )
    held = submit(client, people["alice"], GPU_NET)
    cpu_job = submit(client, people["alice"])
    heartbeat(db, "w1", "cpu")
    assert round_(db, dispatcher) == [cpu_job]  # the cap is on GPU-hours only
    resets = (monday + timedelta(days=7)).strftime("%a %Y-%m-%d %H:%M UTC")
    assert client.get(f"/api/v1/jobs/{held}", headers=people["alice"]).get_json()["waiting"] == {
        "reason": "budget",
        "message": f"budget: 0 of 0.01 GPU-hours left this week; the week resets {resets}",
    }
    me = my_course(client, people["alice"])
    assert me["week"]["used"] == round(60 / 3600, 4) and me["week"]["left"] == 0.0
    assert me["week"]["resets_at"] == (monday + timedelta(days=7)).isoformat().replace("+00:00", "Z")
    assert me["used"]["gpu_hours"] == held_hours(db, "alice", "gpu")
    assert me["left"]["gpu_hours"] == pytest.approx(10 - 1 - 60 / 3600, abs=1e-3)


def test_a_job_no_budget_could_cover_is_a_422_and_a_grant_makes_room(client, db, people):
    make_course(client, db, people, {"gpu_hours": 0, "cpu_hours": 5})
    refused = client.post("/api/v1/jobs", json=GPU_NET, headers=people["alice"])
    assert_error(refused, 422, field="resources")
    assert (
        "ask an instructor of DL-2026 for a grant, or run it on the cpu queue" in refused.get_json()["error"]["message"]
    )
    with db.session() as session:
        assert session.scalar(select(Job.id).where(Job.queue == "gpu")) is None  # nothing was written
    submit(client, people["alice"])  # CPU-hours it has
    added = client.put("/api/v1/courses/DL-2026/members/prof", headers=people["root"], json={"role": "student"})
    assert added.status_code == 200
    submit(client, people["prof"], GPU_NET)  # an instructor, even one also a student: no budget holds staff
    grant = {"user": "alice", "gpu_hours": 1}
    assert client.post("/api/v1/courses/DL-2026/grants", headers=people["prof"], json=grant).status_code == 201
    assert submit(client, people["alice"], GPU_NET)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user": "alice"}, "gpu_hours"),  # both 0
        ({"user": "alice", "gpu_hours": -1}, "gpu_hours"),
        ({"user": "alice", "cpu_hours": "lots"}, "cpu_hours"),
        ({"user": "nobody", "gpu_hours": 1}, "user"),
        ({"user": "root", "gpu_hours": 1}, "user"),  # not a student of the course
        ({"user": "alice", "gpu_hours": 1, "extra": 1}, "extra"),
        ({"gpu_hours": 1}, "user"),
    ],
)
def test_a_bad_grant_is_a_422_naming_the_field(client, db, people, body, field):
    make_course(client, db, people, {"gpu_hours": 1})
    assert_error(client.post("/api/v1/courses/DL-2026/grants", headers=people["prof"], json=body), 422, field=field)


def test_a_closed_course_refuses_jobs(client, db, people):
    make_course(client, db, people, {"cpu_hours": 5})
    with db.session() as session:
        session.execute(update(Course).values(term_end=utcnow().date() - timedelta(days=1)))
    assert_error(client.post("/api/v1/jobs", json=IRIS_KNN, headers=people["alice"]), 409, code="course_closed")


def test_a_research_users_queued_jobs_are_in_me_with_an_estimated_start(client, db, make_user, dispatcher):
    bob = make_user("bob")
    heartbeat(db, "w1", "cpu", concurrency=2)
    done = submit(client, bob)
    ran(db, done, hours_ago=0, hours=0.1)  # the queue's median run: 6 minutes
    first, second, third = (submit(client, bob) for _ in range(3))
    me = client.get("/api/v1/me", headers=bob).get_json()
    assert me["courses"] == []
    assert [(q["id"], q["position"], q["waiting"]) for q in me["queue"]] == [
        (first, 1, None),
        (second, 2, None),
        (third, 3, None),
    ]
    starts = [q["estimated_start"] for q in me["queue"]]
    assert all(starts) and starts == sorted(starts)  # 3, 6 and 9 minutes from now with two slots
    # The job's own page says the same (a listing leaves it out).
    job = client.get(f"/api/v1/jobs/{second}", headers=bob).get_json()
    at = [datetime.fromisoformat(text.replace("Z", "+00:00")) for text in (job["estimated_start"], starts[1])]
    assert job["position"] == 2 and abs(at[0] - at[1]) < timedelta(seconds=30)  # "now" moved between the two
    assert "estimated_start" not in client.get("/api/v1/jobs", headers=bob).get_json()["items"][0]
    assert client.get(f"/api/v1/jobs/{done}", headers=bob).get_json().get("estimated_start") is None
