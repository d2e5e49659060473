"""Budgets from the command line against a real service (PostgreSQL, Redis, the dispatcher,
a CPU worker, the API): a student whose CPU-hours are spent sees their next job wait with the
reason (`labtrain status`, `labtrain me`), the instructor reads the course's use (`labtrain
courses usage`) and grants an hour (`labtrain courses grant`), and the job runs."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from service.core.db import Database
from service.core.orm import Course, Job
from tests.service.client.test_client_cli import stack  # noqa: F401 (the fixture)
from tests.service.courses.test_course_cli import labtrain, logged_in
from tests.support.processes import run_cli

WAIT_S = 120  # how long a step may take on a loaded machine; never a pass/fail timing


def until(check, what: str):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    pytest.fail(f"gave up waiting for {what}")


@pytest.fixture(scope="module")
def people(stack, tmp_path_factory):  # noqa: F811
    home = tmp_path_factory.mktemp("budget-cli")
    dean = run_cli(["users", "create", "dean", "--admin"], stack.env)
    assert dean.returncode == 0, dean.stderr
    return {
        "admin": logged_in(stack, home / "admin", dean.stdout.strip()),
        "prof": logged_in(stack, home / "prof", stack.create_user("prof")),
        "ann": logged_in(stack, home / "ann", stack.create_user("ann")),
    }


def test_a_spent_budget_holds_a_job_until_the_instructor_grants_hours(stack, people):  # noqa: F811
    made = labtrain(
        people["admin"], "courses", "create", "BUD-2026", "--term-end", "2099-01-31", "--instructor", "prof",
        "--cpu-hours", "1",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    enrolled = labtrain(people["prof"], "courses", "member", "BUD-2026", "ann", "--role", "student")
    assert enrolled.returncode == 0, enrolled.stderr
    spec = ["--dataset", "iris", "--algorithm", "knn", "--course", "BUD-2026", "--json"]
    first = json.loads(labtrain(people["ann"], "submit", *spec).stdout)["id"]
    assert labtrain(people["ann"], "watch", first, "--json").returncode == 0

    # Its run is written back as an hour long, in a course begun two hours ago: the hour is spent.
    db = Database(stack.env["LABTRAIN_DATABASE_URL"])
    with db.session() as session:
        finished = session.scalar(select(Job.finished_at).where(Job.id == first))
        session.execute(update(Job).where(Job.id == first).values(started_at=finished - timedelta(hours=1)))
        session.execute(update(Course).values(created_at=finished - timedelta(hours=2)))
    held = json.loads(labtrain(people["ann"], "submit", *spec).stdout)["id"]
    reason = "budget: 0 of 1 CPU-hours left this term"

    def status_with_reason() -> str | None:
        out = labtrain(people["ann"], "status", held).stdout
        return out if reason in out else None

    shown = until(status_with_reason, reason)
    assert f"queued, waiting: {reason}" in shown

    me = labtrain(people["ann"], "me")
    assert me.returncode == 0, me.stderr
    assert "BUD-2026 (student): budget: 0 GPU-hours used (no limit), 0 of 1 CPU-hours left this term" in me.stdout
    assert f"job {held}: position 1 in the cpu queue, waiting: {reason}" in me.stdout, me.stdout
    usage = labtrain(people["prof"], "courses", "usage", "BUD-2026")
    assert usage.returncode == 0, usage.stderr
    header, row = usage.stdout.splitlines()
    assert header.split()[:3] == ["USER", "NAME", "JOBS"] and row.split()[0] == "ann" and row.split()[2] == "2"
    refused = labtrain(people["ann"], "courses", "grant", "BUD-2026", "ann", "--cpu-hours", "5")
    assert refused.returncode != 0 and "only BUD-2026's instructors" in refused.stderr

    granted = labtrain(people["prof"], "courses", "grant", "BUD-2026", "ann", "--cpu-hours", "1")
    assert granted.returncode == 0, granted.stderr
    assert "ann in BUD-2026: 0 GPU-hours used (no limit), 1 of 2 CPU-hours left this term" in granted.stderr
    ran = labtrain(people["ann"], "watch", held, "--json")  # the grant woke the dispatcher
    assert ran.returncode == 0 and json.loads(ran.stdout)["waiting"] is None

    with db.session() as session:
        runs = session.execute(select(Job.started_at, Job.finished_at).where(Job.id.in_((first, held)))).all()
    db.dispose()
    seconds = sum((end - start).total_seconds() for start, end in runs)
    (course,) = json.loads(labtrain(people["ann"], "me", "--json").stdout)["courses"]
    assert course["used"]["cpu_hours"] == round(seconds / 3600, 4)
    assert course["granted"] == {"gpu_hours": 0.0, "cpu_hours": 1.0} and course["queue"] == []
