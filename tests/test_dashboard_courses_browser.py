"""The dashboard's course and competition pages in headless Chromium against a real stack, as
tests/test_dashboard_browser.py runs it (its browser and page fixtures): the header's budget
figures, a student's queue and waiting job, an instructor's usage table and grants, a
competition's leaderboard and a CSV submitted through the form."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests import test_dashboard_browser as dashboard
from tests.conftest import free_port
from tests.support.processes import Client, create_user_token, deployment_env, start_stack, stop_all, wait_until_healthy

# The browser and page fixtures of the dashboard's own tests; `page` takes this module's stack.
browser, page, screenshots, sign_in = dashboard.browser, dashboard.page, dashboard.screenshots, dashboard.sign_in

COURSE = "DL-2026"
STUDENTS = ("alice", "bob", "carol")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, make_pg_database, make_redis_url):
    """The stack with DL-2026: taught by prof, three students, 10 GPU-hours and 1 CPU-hour each."""
    home = tmp_path_factory.mktemp("dashboard-courses")
    env = deployment_env(home, LABTRAIN_DATABASE_URL=make_pg_database(), LABTRAIN_BROKER_URL=make_redis_url())
    tokens = {
        "root": create_user_token(env, "root", admin=True),
        "prof": create_user_token(env, "prof"),
    }
    port = free_port()
    processes = start_stack(env, home, port, ["--queues", "cpu", "--concurrency", "2"])
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_healthy(base, processes)
        root = Client(base, tokens["root"])
        course = {
            "name": COURSE,
            "term_end": "2099-01-31",
            "instructors": ["prof"],
            "budget": {"gpu_hours": 10, "cpu_hours": 1},
        }
        assert root.post("/api/v1/courses", json=course).status_code == 201
        roster = {"students": [{"id": name, "name": name.title(), "email": f"{name}@uni.test"} for name in STUDENTS]}
        answer = Client(base, tokens["prof"]).post(f"/api/v1/courses/{COURSE}/roster", json=roster)
        assert answer.status_code == 200, answer.text
        tokens.update({student["id"]: student["token"] for student in answer.json()["created"]})
        yield base, tokens, env
    finally:
        stop_all(processes)


def spend_the_cpu_budget(base: str, env: dict[str, str], token: str) -> str:
    """The student's CPU-hour spent: a job that held two hours (what the worker records of a long
    run, written here), then a job that waits for budget; that one's id."""
    client = Client(base, token)
    done = client.post("/api/v1/jobs", json={"dataset": "iris", "algorithm": "knn"})
    assert done.status_code == 201, done.text
    done = done.json()
    assert client.wait_for(done["id"])["status"] == "succeeded"
    engine = create_engine(env["LABTRAIN_DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET earlier_device_s = 7200 WHERE id = :id"), {"id": done["id"]})
    engine.dispose()
    waiting = client.post("/api/v1/jobs", json={"dataset": "iris", "algorithm": "knn"}).json()
    deadline = time.monotonic() + 60
    while not client.get(f"/api/v1/jobs/{waiting['id']}").json().get("waiting"):
        assert time.monotonic() < deadline, "the dispatcher never held the job for its budget"
        time.sleep(0.1)
    return waiting["id"]


def test_a_student_sees_their_budget_in_the_header_and_their_waiting_job_on_the_course_page(page, stack, screenshots):
    base, tokens, env = stack
    waiting = spend_the_cpu_budget(base, env, tokens["alice"])
    me = Client(base, tokens["alice"]).get("/api/v1/me").json()
    [queued] = next(course for course in me["courses"] if course["name"] == COURSE)["queue"]
    message = queued["waiting"]["message"]
    assert message == "budget: 0 of 1 CPU-hours left this term"

    sign_in(page, tokens["alice"])
    assert page.inner_text(f"[data-test=job-row][data-job-id='{waiting}'] [data-test=job-row-waiting]") == message
    header = f"[data-test=nav-course][data-course={COURSE}]"
    page.wait_for_selector(header)
    assert page.inner_text(f"{header} [data-kind=cpu] [data-test=used]") == "2"
    assert page.inner_text(f"{header} [data-kind=cpu] [data-test=left]") == "0"
    assert page.inner_text(f"{header} [data-kind=gpu] [data-test=used]") == "0"
    assert page.inner_text(f"{header} [data-kind=gpu] [data-test=left]") == "10"
    summary = page.inner_text(f"{header} [data-test=nav-queue-summary]")
    assert f"1 queued, next #{queued['position']}" in summary and "waiting for budget" in summary

    page.click(header)
    item = f"[data-test=queue-item][data-job-id='{waiting}']"
    page.wait_for_selector(item)
    assert page.inner_text("[data-test=course-name]") == COURSE
    assert page.inner_text(f"{item} [data-test=queue-position]") == f"position {queued['position']}"
    assert page.inner_text(f"{item} [data-test=queue-waiting]") == message
    assert page.inner_text("[data-test=my-usage] [data-kind=cpu] [data-test=left]") == "0"
    # A student sees neither the class list nor the others' usage.
    assert page.query_selector("[data-test=course-members]") is None
    assert page.query_selector("[data-test=course-usage]") is None

    page.screenshot(path=str(screenshots / "course-page-student.png"), full_page=True)
    page.click(f"{item} a")
    assert page.wait_for_selector("[data-test=job-waiting]").inner_text() == message
    assert page.inner_text("#job-status") == "queued"
    # The header follows the jobs: once the job is cancelled nothing of alice's is queued.
    assert Client(base, tokens["alice"]).post(f"/api/v1/jobs/{waiting}/cancel").status_code == 202
    page.wait_for_selector(f"{header} [data-test=nav-queue-summary]", state="detached")
    assert page.inner_text(f"{header} [data-kind=cpu] [data-test=left]") == "0"


def test_an_instructor_sees_the_students_usage_and_a_grant_changes_it(page, stack, screenshots):
    base, tokens, env = stack
    waiting = spend_the_cpu_budget(base, env, tokens["bob"])
    sign_in(page, tokens["prof"])
    page.goto(f"/#/courses/{COURSE}")
    bob = "[data-test=usage-row][data-user=bob]"
    page.wait_for_selector(bob)
    members = {
        (m.get_attribute("data-role"), m.get_attribute("data-user"))
        for m in page.query_selector_all("[data-test=member]")
    }
    assert members == {("instructor", "prof"), *(("student", name) for name in STUDENTS)}
    assert page.inner_text(f"{bob} [data-test=cpu-used]") == "2"
    assert page.inner_text(f"{bob} [data-test=cpu-left]") == "0"
    carol = "[data-test=usage-row][data-user=carol]"
    assert [page.inner_text(f"{carol} [data-test={cell}]") for cell in ("cpu-used", "cpu-left", "gpu-left")] == [
        "0",
        "1",
        "10",
    ]

    # Hours go to students only: the form shows the API's refusal at the field it names.
    page.fill("[data-test=grant-user]", "prof")
    page.fill("[data-test=grant-cpu]", "2")
    page.click("[data-test=grant-submit]")
    assert "not a student" in page.wait_for_selector("[data-test=grant-message] [data-test=error]").inner_text()
    assert page.inner_text("[data-test=grant-message] [data-test=error-field]") == "user"
    assert "invalid" in page.get_attribute("[data-test=grant-user]", "class")

    page.fill("[data-test=grant-user]", "bob")
    page.fill("[data-test=grant-cpu]", "2")
    page.click("[data-test=grant-submit]")
    page.wait_for_selector("[data-test=grant-done]")
    page.wait_for_selector(f"{bob} [data-test=granted]:has-text('2 CPU')")
    assert 0.9 < float(page.inner_text(f"{bob} [data-test=cpu-left]")) <= 1
    page.screenshot(path=str(screenshots / "course-page.png"), full_page=True)
    # The grant covers bob's waiting job: the dispatcher starts it.
    assert Client(base, tokens["bob"]).wait_for(waiting)["status"] == "succeeded"


# The hidden test set: ids, two inputs and a label that is x1 > x2.
TEST_ROWS = [(i, i % 7, (i * 3) % 5, "yes" if i % 7 > (i * 3) % 5 else "no") for i in range(1, 21)]


def predictions_csv(right: int) -> str:
    """id,prediction with the first `right` rows labelled as the test set labels them, the rest wrong."""
    flip = {"yes": "no", "no": "yes"}
    rows = [f"{i},{label if n < right else flip[label]}" for n, (i, _a, _b, label) in enumerate(TEST_ROWS)]
    return "id,prediction\n" + "\n".join(rows) + "\n"


def scored(client: Client, competition: str, submission: str) -> dict:
    deadline = time.monotonic() + 90
    while True:
        items = client.get(f"/api/v1/competitions/{competition}/submissions").json()["items"]
        found = next(item for item in items if item["id"] == submission)
        if found["status"] != "scoring":
            return found
        assert time.monotonic() < deadline, f"submission {submission} was never scored"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def competition(stack) -> str:
    """aicup in DL-2026, with bob's and carol's predictions scored: its id."""
    base, tokens, _env = stack
    prof = Client(base, tokens["prof"])
    table = "id,x1,x2,label\n" + "".join(f"{i},{a},{b},{label}\n" for i, a, b, label in TEST_ROWS)
    test = prof.post("/api/v1/datasets", files={"file": ("aicup-test.csv", table)}, data={"name": "aicup-test"})
    assert test.status_code == 201, test.text
    spec = {
        "name": "aicup",
        "metric": "accuracy",
        "test": test.json()["id"],
        "target": "label",
        "public_fraction": 0.5,
        "daily_limit": 3,
        "closes_at": "2099-01-01T00:00:00Z",
    }
    made = prof.post(f"/api/v1/courses/{COURSE}/competitions", json=spec)
    assert made.status_code == 201, made.text
    competition_id = made.json()["id"]
    for student, right in (("bob", 20), ("carol", 12)):
        client = Client(base, tokens[student])
        sent = client.post(
            f"/api/v1/competitions/{competition_id}/submissions",
            files={"file": ("predictions.csv", predictions_csv(right))},
        )
        assert sent.status_code == 202, sent.text
        assert scored(client, competition_id, sent.json()["id"])["status"] == "scored"
    return competition_id


def test_the_leaderboard_shows_the_apis_rows_and_a_student_submits_a_csv_from_the_form(
    page, stack, competition, tmp_path, screenshots
):
    base, tokens, _env = stack
    alice = Client(base, tokens["alice"])
    board = alice.get(f"/api/v1/competitions/{competition}/leaderboard").json()
    assert board["phase"] == "public" and [row["user"] for row in board["rows"]] == ["bob", "carol"]

    sign_in(page, tokens["alice"])
    page.goto(f"/#/courses/{COURSE}")
    page.click(f"[data-test=course-competition][data-id='{competition}'] [data-test=competition-link]")
    page.wait_for_selector("[data-test=leaderboard-row]")
    assert page.inner_text("[data-test=competition-name]") == "aicup"
    assert page.inner_text("[data-test=competition-metric]") == "accuracy"
    assert page.get_attribute("[data-test=competition-phase]", "class").endswith("phase-public")
    shown = [
        [row.query_selector(f"[data-test={cell}]").inner_text() for cell in ("rank", "user", "score", "count")]
        for row in page.query_selector_all("[data-test=leaderboard-row]")
    ]
    assert shown == [
        [str(r["rank"]), r["user"], format_score(r["score"]), str(r["submissions"])] for r in board["rows"]
    ]
    assert page.inner_text("[data-test=submissions-left]") == "3 submissions left today"
    assert page.query_selector("[data-test=grades-download]") is None  # staff only

    path = tmp_path / "predictions.csv"
    path.write_text(predictions_csv(16))
    page.click("[data-test=submit-file]")  # no file chosen yet: the form says so
    assert "choose a CSV file" in page.inner_text("[data-test=submit-message]")
    page.set_input_files("[data-test=submission-file]", str(path))
    page.click("[data-test=submit-file]")
    page.wait_for_selector("[data-test=submitted]")
    row = page.wait_for_selector("[data-test=submission-row][data-status=scored]", timeout=90_000)
    [mine] = alice.get(f"/api/v1/competitions/{competition}/submissions").json()["items"]
    assert row.get_attribute("data-id") == mine["id"]
    assert page.inner_text("[data-test=public-score]") == format_score(mine["public_score"])
    assert page.inner_text("[data-test=submissions-left]") == "2 submissions left today"
    page.wait_for_selector("[data-test=leaderboard-row][data-user=alice]")  # the board was drawn again

    page.click("[data-test=select-submission]")
    page.wait_for_selector("[data-test=submission-row] [data-test=selected]")
    page.screenshot(path=str(screenshots / "competition-page.png"), full_page=True)
    assert alice.get(f"/api/v1/competitions/{competition}/submissions").json()["items"][0]["selected"] is True


def test_the_staff_download_the_grades_from_the_leaderboard_page(page, stack, competition):
    _base, tokens, _env = stack
    sign_in(page, tokens["prof"])
    page.goto(f"/#/competitions/{competition}")
    page.wait_for_selector("[data-test=leaderboard-row]")
    users = {row.inner_text() for row in page.query_selector_all("[data-test=submission-row] td:nth-child(2)")}
    assert {"bob", "carol"} <= users  # the staff see everyone's submissions
    with page.expect_download() as download:
        page.click("[data-test=grades-download]")
    assert download.value.suggested_filename == "aicup-grades.csv"
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0] == "user,name,email,rank,public,private,submissions"
    assert {line.split(",")[0] for line in lines[1:]} == set(STUDENTS)


def format_score(score: float) -> str:
    """A score as the page's formatNumber writes it (four decimals, integers as they are)."""
    return str(int(score)) if float(score).is_integer() else f"{score:.4f}"


def test_a_student_submits_a_model_trained_on_the_courses_data_set(page, stack, competition):
    base, tokens, _env = stack
    rows = [(i % 7, (i * 3) % 5) for i in range(21, 81)]
    train = "x1,x2,label\n" + "".join(f"{a},{b},{'yes' if a > b else 'no'}\n" for a, b in rows)
    published = Client(base, tokens["prof"]).post(
        f"/api/v1/courses/{COURSE}/datasets", files={"file": ("aicup-train.csv", train)}, data={"name": "aicup-train"}
    )
    assert published.status_code == 201, published.text
    carol = Client(base, tokens["carol"])
    spec = {"dataset": {"course": COURSE, "name": "aicup-train", "target": "label"}, "algorithm": "decision_tree"}
    job = carol.post("/api/v1/jobs", json=spec)
    assert job.status_code == 201, job.text
    model = carol.wait_for(job.json()["id"])["result"]["model_id"]

    sign_in(page, tokens["carol"])
    page.goto(f"/#/courses/{COURSE}")
    page.wait_for_selector("[data-test=course-dataset][data-name=aicup-train]")
    page.click(f"[data-test=course-competition][data-id='{competition}'] [data-test=competition-link]")
    page.wait_for_selector(f"[data-test=submission-model] option[value='{model}']", state="attached")
    page.select_option("[data-test=submission-model]", model)
    page.click("[data-test=submit-model]")
    row = f"[data-test=submission-row]:has(a[href='#/models/{model}'])"
    page.wait_for_selector(f"{row}:not([data-status=scoring])", timeout=90_000)
    mine = next(
        item
        for item in carol.get(f"/api/v1/competitions/{competition}/submissions").json()["items"]
        if item["model"] == model
    )
    assert mine["status"] == "scored", mine
    assert page.get_attribute(row, "data-status") == "scored"
    assert page.inner_text(f"{row} [data-test=public-score]") == format_score(mine["public_score"])
    assert page.inner_text("[data-test=submissions-left]") == "1 submission left today"
