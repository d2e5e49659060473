"""Fair share between courses, then between students: two courses with shares 2 and 1 and a
research user (in no course), each with more jobs queued than the workers can run. Real
dispatcher rounds release the jobs; between rounds the released jobs run for a fixed time on
a clock the test moves (no sleeping), so the use fair share reads is exactly what ran."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace
from datetime import date, timedelta

import pytest
from sqlalchemy import select, update

import service.dispatcher
from service.core.broker import make_celery
from service.core.orm import Course, CourseMember, Job, User, utcnow
from service.dispatcher import Dispatcher
from service.jobs import lifecycle
from service.lab.fair_share import queue_order
from service.lab.users import create_user
from tests.support.workers import heartbeat

pytestmark = pytest.mark.fast  # the fast tier: no servers needed (tests/conftest.py)

SPEC = {"dataset": "iris", "algorithm": "knn"}
RUN_S = 600  # every job runs ten minutes
SLOTS = 6
ROUNDS = 40
JOBS_EACH = 40  # each student's; the research user has three times as many
COURSES = {"BIG": (2.0, ["a1", "a2", "a3", "a4"]), "SMALL": (1.0, ["b1", "b2", "b3", "b4"])}


@pytest.fixture
def lab(db):
    """The two courses and their students, the research user, and their queued jobs: more than
    the rounds can release in any group."""
    group_of = {}
    with db.session() as session:
        for name, (share, students) in COURSES.items():
            course = Course(name=name, term_end=date(2099, 1, 31), share=share, budget=None)
            session.add(course)
            session.flush()
            for student in students:
                user = create_user(session, student)[0]
                session.add(CourseMember(course_id=course.id, user_id=user.id, role="student"))
                group_of[student] = name
                for _ in range(JOBS_EACH):
                    job = lifecycle.create_job(session, user, family="classic", spec=SPEC, queue="cpu", name=None)
                    job.course_id = course.id
        research = create_user(session, "rita")[0]
        group_of["rita"] = "research"
        for _ in range(3 * JOBS_EACH):
            lifecycle.create_job(session, research, family="classic", spec=SPEC, queue="cpu", name=None)
    heartbeat(db, "w1", "cpu", concurrency=SLOTS)
    return group_of


def test_courses_get_their_shares_and_students_take_turns(db, settings, lab, monkeypatch):
    dispatcher = Dispatcher(settings, make_celery(settings), name="test-dispatcher")
    clock = [utcnow()]
    monkeypatch.setattr(service.dispatcher, "utcnow", lambda: clock[0])  # the rounds' time: the test's clock
    released_in_order = []
    for _ in range(ROUNDS):
        with db.session() as session:
            released = dispatcher.run_round(session)
        assert len(released) == SLOTS
        released_in_order += released
        with db.session() as session:  # they ran, each for RUN_S, and ended before the next round
            session.execute(
                update(Job)
                .where(Job.id.in_(released))
                .values(
                    status=lifecycle.SUCCEEDED,
                    started_at=clock[0],
                    finished_at=clock[0] + timedelta(seconds=RUN_S),
                )
            )
        clock[0] += timedelta(seconds=RUN_S)

    with db.session() as session:
        owner = dict(session.execute(select(Job.id, User.name).join(User, User.id == Job.owner_id)).all())
        ran = session.execute(select(Job.id, Job.started_at, Job.finished_at).where(Job.status == "succeeded")).all()
    seconds: dict[str, float] = defaultdict(float)
    for job_id, started, finished in ran:
        seconds[lab[owner[job_id]]] += (finished - started).total_seconds()
    assert sum(seconds.values()) == ROUNDS * SLOTS * RUN_S
    # Shares 2 : 1 : 1 (research_share is 1 by default).
    assert seconds["BIG"] / seconds["SMALL"] == pytest.approx(2.0, rel=0.1)
    assert seconds["research"] / seconds["SMALL"] == pytest.approx(1.0, rel=0.1)

    for course, (_share, students) in COURSES.items():
        turns = [owner[job_id] for job_id in released_in_order if lab[owner[job_id]] == course]
        counts = Counter(turns)
        assert max(counts.values()) - min(counts.values()) <= 1, counts
        # Taking turns: at no point is a student more than a job or two ahead of a classmate (a job
        # placed in a round counts a minute until it runs, so one who is behind may get two).
        seen: Counter = Counter(dict.fromkeys(students, 0))
        for student in turns:
            seen[student] += 1
            assert max(seen.values()) - min(seen.values()) <= 2, turns


def test_the_research_share_setting_weighs_the_jobs_in_no_course(db, settings, lab):
    with db.session() as session:
        names = dict(session.execute(select(Job.id, User.name).join(User, User.id == Job.owner_id)).all())
        first = [lab[names[job_id]] for job_id in queue_order(session, "cpu", settings)[:12]]
        heavier = [
            lab[names[job_id]] for job_id in queue_order(session, "cpu", replace(settings, research_share=4.0))[:12]
        ]
    # No use yet: the order follows the shares alone, as each placed job charges its group.
    assert Counter(first) == {"BIG": 6, "SMALL": 3, "research": 3}
    assert Counter(heavier)["research"] > Counter(heavier)["BIG"] > Counter(heavier)["SMALL"]
