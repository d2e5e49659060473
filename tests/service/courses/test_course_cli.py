"""`labtrain courses` and `labtrain me`, run as an admin, an instructor and a student run them
(the installed `labtrain` script in subprocesses) against a real service: an admin makes a
course, its instructor imports a roster and writes the new tokens to a file only they can read,
adds a TA, and a student from the roster logs in with their token, sees their budget and
submits a job in the course."""

from __future__ import annotations

import csv
import json
import stat
import subprocess
from pathlib import Path

import pytest

from tests.service.client.test_client_cli import LABTRAIN, client_env, stack  # noqa: F401 (the fixture)
from tests.support.processes import run_cli


def labtrain(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(LABTRAIN), *args], env=env, capture_output=True, text=True, timeout=120)


def logged_in(stack, home: Path, token: str) -> dict[str, str]:  # noqa: F811 (the fixture's name)
    env = client_env(home, LABTRAIN_URL=stack.url)
    login = subprocess.run(
        [str(LABTRAIN), "login", "--token", token], env=env, capture_output=True, text=True, timeout=60
    )
    assert login.returncode == 0, login.stderr
    return env


@pytest.fixture(scope="module")
def people(stack, tmp_path_factory):  # noqa: F811
    home = tmp_path_factory.mktemp("course-cli")
    dean = run_cli(["users", "create", "dean", "--admin"], stack.env)
    assert dean.returncode == 0, dean.stderr
    admin = logged_in(stack, home / "admin", dean.stdout.strip())
    prof = logged_in(stack, home / "prof", stack.create_user("prof"))
    stack.create_user("tara")  # enrolled by the roster, then made a TA
    return {"home": home, "admin": admin, "prof": prof}


def test_an_admin_creates_a_course_its_instructor_imports_the_roster_and_a_student_uses_it(stack, people):  # noqa: F811
    made = labtrain(
        people["admin"], "courses", "create", "DL-2026", "--term-end", "2099-01-31", "--instructor", "prof",
        "--gpu-hours", "10", "--cpu-hours", "200",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "DL-2026"
    refused = labtrain(
        people["prof"], "courses", "create", "ML-2026", "--term-end", "2099-01-31", "--instructor", "prof"
    )
    assert refused.returncode != 0 and "only an admin creates courses" in refused.stderr

    roster = people["home"] / "roster.csv"
    roster.write_text("id,name,email\nann,Ann Lee,ann@example.edu\nbob,Bob Wu,bob@example.edu\ntara,Tara Ng,t@x.edu\n")
    tokens = people["home"] / "tokens.csv"
    imported = labtrain(people["prof"], "courses", "roster", "DL-2026", str(roster), "--tokens-out", str(tokens))
    assert imported.returncode == 0, imported.stderr
    assert "3 students enrolled in DL-2026, 2 of them new accounts" in imported.stderr, imported.stderr
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    rows = list(csv.DictReader(tokens.open()))
    assert [row["id"] for row in rows] == ["ann", "bob"] and all(row["token"] for row in rows)
    again = labtrain(people["prof"], "courses", "roster", "DL-2026", str(roster), "--tokens-out", str(tokens))
    assert again.returncode != 0 and "exists" in again.stderr  # never overwrites the tokens written once

    made_ta = labtrain(people["prof"], "courses", "member", "DL-2026", "tara", "--role", "ta")
    assert made_ta.returncode == 0, made_ta.stderr
    shown = json.loads(labtrain(people["prof"], "courses", "show", "DL-2026", "--json").stdout)
    assert {"ann", "bob", "tara", "prof"} <= {m["user"] for m in shown["members"]}

    ann = logged_in(stack, people["home"] / "ann", rows[0]["token"])
    me = labtrain(ann, "me")
    assert me.returncode == 0, me.stderr
    assert "DL-2026 (student)" in me.stdout and "of 10 GPU-hours left this term" in me.stdout, me.stdout
    submitted = labtrain(ann, "submit", "--dataset", "iris", "--algorithm", "knn", "--course", "DL-2026", "--json")
    assert submitted.returncode == 0, submitted.stderr
    assert json.loads(submitted.stdout)["course"] == "DL-2026"
    listed = json.loads(labtrain(people["prof"], "jobs", "--json").stdout)
    jobs = listed["items"] if isinstance(listed, dict) else listed
    assert json.loads(submitted.stdout)["id"] in {job["id"] for job in jobs}  # the instructor sees the course's jobs
