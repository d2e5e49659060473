"""`labtrain compete` (the installed script, against a real service with its workers): an
instructor creates a competition from a hidden test file; a student lists it, saves its test
inputs (no labels), submits a predictions file, waits for its scoring job, selects it and
finds themself on the leaderboard."""

from __future__ import annotations

import csv
import json
import time

from tests.service.client.test_client_cli import stack  # noqa: F401 (the fixture)
from tests.service.competitions.conftest import csv_bytes, table
from tests.service.courses.test_course_cli import labtrain, logged_in
from tests.support.processes import run_cli


def test_an_instructor_creates_a_competition_and_a_student_competes(stack, tmp_path):  # noqa: F811
    dean = run_cli(["users", "create", "dean", "--admin"], stack.env)
    assert dean.returncode == 0, dean.stderr
    admin = logged_in(stack, tmp_path / "admin", dean.stdout.strip())
    prof = logged_in(stack, tmp_path / "prof", stack.create_user("prof"))
    ann = logged_in(stack, tmp_path / "ann", stack.create_user("ann"))
    assert (
        labtrain(admin, "courses", "create", "DL-2026", "--term-end", "2099-01-31", "--instructor", "prof").returncode
        == 0
    )
    assert labtrain(prof, "courses", "member", "DL-2026", "ann", "--role", "student").returncode == 0
    hidden = tmp_path / "hidden.csv"
    hidden.write_bytes(csv_bytes(table(40, 3, with_id=True)))

    refused = labtrain(ann, "compete", "create", "DL-2026", "cup", "--test", str(hidden), "--target", "label",
                       "--metric", "accuracy", "--closes-at", "2099-01-01T00:00:00Z")  # fmt: skip
    assert refused.returncode != 0 and "instructors" in refused.stderr
    made = labtrain(prof, "compete", "create", "DL-2026", "cup", "--test", str(hidden), "--target", "label",
                    "--metric", "accuracy", "--closes-at", "2099-01-01T00:00:00Z", "--daily-limit", "3")  # fmt: skip
    assert made.returncode == 0, made.stderr
    competition = made.stdout.strip()
    listed = labtrain(ann, "compete", "list", "DL-2026")
    assert listed.returncode == 0 and competition in listed.stdout and "accuracy" in listed.stdout

    inputs = tmp_path / "test.csv"
    saved = labtrain(ann, "compete", "inputs", competition, "-o", str(inputs))
    assert saved.returncode == 0, saved.stderr
    rows = list(csv.DictReader(inputs.open()))
    assert len(rows) == 40 and set(rows[0]) == {"id", "a", "b"}  # never the label column
    predictions = tmp_path / "predictions.csv"
    predictions.write_text("id,prediction\n" + "".join(f"{row['id']},qx-alpha\n" for row in rows))

    submitted = labtrain(ann, "compete", "submit", competition, "--file", str(predictions))
    assert submitted.returncode == 0, submitted.stderr
    assert "2 submissions left today" in submitted.stderr
    submission = submitted.stdout.strip()
    deadline = time.monotonic() + 180
    while True:
        mine = json.loads(labtrain(ann, "compete", "submissions", competition, "--json").stdout)["items"]
        if mine[0]["status"] != "scoring" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert mine[0]["status"] == "scored", mine
    assert labtrain(ann, "compete", "select", competition, submission).returncode == 0

    board = labtrain(ann, "compete", "leaderboard", competition)
    assert board.returncode == 0, board.stderr
    assert "public leaderboard, accuracy (higher is better)" in board.stdout
    assert board.stdout.split("\n")[2].split()[:2] == ["1", "ann"], board.stdout
