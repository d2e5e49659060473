"""`labtrain courses dataset` and `labtrain courses datasets` (the installed script, against a
real service): an instructor publishes a CSV to the course, a student lists it and trains on
it as {"course", "name"}; a student may not publish."""

from __future__ import annotations

import json

from tests.service.client.test_client_cli import stack  # noqa: F401 (the fixture)
from tests.service.courses.test_course_cli import labtrain, logged_in
from tests.support.processes import run_cli

CSV = "a,b,label\n" + "".join(f"{i % 7},{(i * 3) % 5},{int(i % 7 > 3)}\n" for i in range(60))


def test_an_instructor_publishes_and_a_student_trains_on_it(stack, tmp_path):  # noqa: F811
    dean = run_cli(["users", "create", "dean", "--admin"], stack.env)
    assert dean.returncode == 0, dean.stderr
    admin = logged_in(stack, tmp_path / "admin", dean.stdout.strip())
    prof = logged_in(stack, tmp_path / "prof", stack.create_user("prof"))
    ann = logged_in(stack, tmp_path / "ann", stack.create_user("ann"))
    made = labtrain(admin, "courses", "create", "DL-2026", "--term-end", "2099-01-31", "--instructor", "prof")
    assert made.returncode == 0, made.stderr
    assert labtrain(prof, "courses", "member", "DL-2026", "ann", "--role", "student").returncode == 0
    data = tmp_path / "train.csv"
    data.write_text(CSV)

    published = labtrain(prof, "courses", "dataset", "DL-2026", str(data), "--name", "aicup-train", "--target", "label")
    assert published.returncode == 0, published.stderr
    assert '"course": "DL-2026", "name": "aicup-train"' in published.stderr
    refused = labtrain(ann, "courses", "dataset", "DL-2026", str(data), "--name", "mine")
    assert refused.returncode != 0 and "instructors" in refused.stderr

    table = labtrain(ann, "courses", "datasets", "DL-2026")
    assert table.returncode == 0, table.stderr
    assert table.stdout.split("\n")[1].split() == ["aicup-train", "csv", "60", "label", published.stdout.strip()]
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps({"dataset": {"course": "DL-2026", "name": "aicup-train"}, "algorithm": "knn"}))
    submitted = labtrain(ann, "submit", str(spec), "--json")
    assert submitted.returncode == 0, submitted.stderr
    assert json.loads(submitted.stdout)["spec"]["dataset"]["name"] == "aicup-train"
