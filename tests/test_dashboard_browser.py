"""The web dashboard in headless Chromium against a real stack (PostgreSQL, Redis,
dispatcher, a CPU worker with the frameworks preloaded, gunicorn).

Chromium is Debian's package (`make debian-tools` installs it); Playwright drives it and never
downloads a browser. Set LABTRAIN_SCREENSHOT_DIR=docs/screenshots to refresh the README's
screenshots; otherwise they go to the test's temporary directory."""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from pathlib import Path

import nbformat
import pytest
import requests
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from sqlalchemy import create_engine, text

from tests.conftest import free_port
from tests.support.processes import create_user_token, deployment_env, start_stack, stop_all, wait_until_healthy

CHROMIUM = os.environ.get("LABTRAIN_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
TIMEOUT_MS = 10_000

# Records each change of the loss chart's point count together with the job's status, as the
# page shows them, so the test sees every step however briefly it lasts.
RECORD_CURVE = """() => {
  window.curveLog = [];
  const record = () => {
    const chart = document.querySelector('[data-test=loss-chart]');
    const status = document.querySelector('#job-status');
    const entry = [chart ? Number(chart.dataset.points) : 0, status ? status.textContent : null];
    const last = window.curveLog.at(-1);
    if (!last || last[0] !== entry[0] || last[1] !== entry[1]) window.curveLog.push(entry);
  };
  new MutationObserver(record).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                        characterData: true});
  record();
}"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory, make_pg_database, make_redis_url):
    home = tmp_path_factory.mktemp("dashboard")
    env = deployment_env(home, LABTRAIN_DATABASE_URL=make_pg_database(), LABTRAIN_BROKER_URL=make_redis_url())
    tokens = {name: create_user_token(env, name) for name in ("alice", "bob")}
    port = free_port()
    processes = start_stack(env, home, port, ["--queues", "cpu", "--concurrency", "2"])
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", processes)
        yield f"http://127.0.0.1:{port}", tokens, env
    finally:
        stop_all(processes)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: run `make debian-tools` (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: the suite may run as root (CI containers), where Chromium's sandbox refuses to start.
        instance = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield instance
        instance.close()


@pytest.fixture
def page(browser, stack):
    context = browser.new_context(base_url=stack[0], viewport={"width": 1200, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    failures: list[str] = []
    page.on("pageerror", lambda error: failures.append(str(error)))
    yield page
    context.close()
    assert not failures, f"errors in the page: {failures}"


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    directory = Path(os.environ.get("LABTRAIN_SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def sign_in(page, token: str) -> None:
    page.goto("/")
    page.fill("[data-test=token-input]", token)
    page.click("[data-test=signin-submit]")
    page.wait_for_selector("[data-test=job-list]")


def job_id_of(page) -> str:
    page.wait_for_url("**/#/jobs/*")
    return page.url.rsplit("/", 1)[1]


def test_sign_in_submit_a_knn_job_from_the_form_and_see_it_succeed(page, stack):
    _base, tokens, _env = stack
    page.goto("/")
    page.fill("[data-test=token-input]", "lt_not_a_token")
    page.click("[data-test=signin-submit]")
    assert "not valid" in page.inner_text("[data-test=error-message]")
    sign_in(page, tokens["alice"])

    page.click("[data-test=nav-submit]")
    page.select_option("[data-test=field-dataset]", "iris")
    page.select_option("[data-test=field-algorithm]", "knn")
    page.fill("[data-test=field-params-n_neighbors]", "0")  # the API refuses it and names the field
    page.click("[data-test=submit-job]")
    assert page.inner_text("[data-test=error-field]") == "params.n_neighbors"
    assert "invalid" in page.get_attribute("[data-test=field-params-n_neighbors]", "class")

    page.fill("[data-test=field-params-n_neighbors]", "7")
    page.select_option("[data-test=field-params-weights]", "distance")
    page.fill("[data-test=field-evaluation-cv]", "3")
    page.fill("[data-test=field-name]", "iris-knn")
    page.click("[data-test=submit-job]")
    job_id_of(page)
    page.wait_for_selector("#job-status:text('succeeded')", timeout=60_000)
    assert page.inner_text("[data-test=job-name]") == "iris-knn"
    spec = page.inner_text("[data-test=job-spec]")
    assert '"n_neighbors": 7' in spec and '"weights": "distance"' in spec and '"cv": 3' in spec
    page.wait_for_selector("[data-test=confusion-matrix] svg")
    assert page.get_attribute("[data-test=confusion-matrix]", "data-size") == "3"  # iris has three classes
    assert float(page.inner_text("[data-test=metrics] tr[data-metric=accuracy] td")) > 0.8
    page.click("[data-test=nav-jobs]")
    row = page.wait_for_selector("[data-test=job-row]")
    assert row.inner_text().count("succeeded") == 1 and "iris-knn" in row.inner_text()


def test_a_keras_job_draws_its_curve_live_and_its_model_reads_a_drawn_digit(page, stack, screenshots):
    _base, tokens, _env = stack
    sign_in(page, tokens["alice"])
    page.click("[data-test=nav-submit]")
    page.select_option("[data-test=field-kind]", "network")
    page.select_option("[data-test=field-dataset]", "mnist")
    page.select_option("[data-test=field-framework]", "tensorflow")
    page.select_option("[data-test=field-network-preset]", "mlp")
    page.fill("[data-test=field-training-epochs]", "3")
    page.fill("[data-test=field-training-batch_size]", "16")
    page.fill("[data-test=field-training-validation_split]", "0.1")
    page.fill("[data-test=field-name]", "mnist-mlp")
    page.evaluate(RECORD_CURVE)
    page.click("[data-test=submit-job]")
    job_id_of(page)
    page.wait_for_selector("#job-status:text('succeeded')", timeout=120_000)
    page.wait_for_selector("[data-test=model-link]")

    log = page.evaluate("window.curveLog")
    counts = [count for count, _status in log]
    assert [c for i, c in enumerate(counts) if c and c not in counts[:i]] == [1, 2, 3], log
    for points in (1, 2):  # each epoch's point appeared while the job was still running
        assert [points, "running"] in log, log
    # The last epoch's point comes while the job runs, or in the same poll of the stream as
    # the job's end when saving the model took less than one poll interval.
    assert [3, "running"] in log or log[log.index([2, "running"]) + 1] == [3, "succeeded"], log
    assert log[-1] == [3, "succeeded"], log
    validation = page.get_attribute("[data-test=loss-chart] [data-series=val_loss] polyline", "stroke-dasharray")
    assert validation and page.get_attribute("[data-test=accuracy-chart]", "data-points") == "3"
    page.screenshot(path=str(screenshots / "job-page.png"), full_page=True)

    page.click("[data-test=model-link]")
    canvas = page.wait_for_selector("[data-test=digit-canvas]").bounding_box()
    # A one: a vertical stroke down the middle of the canvas.
    page.mouse.move(canvas["x"] + 140, canvas["y"] + 40)
    page.mouse.down()
    page.mouse.move(canvas["x"] + 146, canvas["y"] + 240, steps=12)
    page.mouse.up()
    page.click("[data-test=predict-drawing]")
    # The first prediction loads TensorFlow and the model into the API process: allow for it.
    answer = page.wait_for_selector(
        "[data-test=prediction], [data-test=prediction-result] [data-test=error]", timeout=60_000
    )
    prediction = answer.inner_text()
    bars = page.query_selector_all("[data-test=probability]")
    assert len(bars) == 10
    probabilities = {bar.get_attribute("data-class"): float(bar.get_attribute("data-value")) for bar in bars}
    assert prediction == max(probabilities, key=probabilities.get) == "1", probabilities
    page.screenshot(path=str(screenshots / "model-page.png"), full_page=True)


STUDENT_SCRIPT = """import time
import labtrain_job
for epoch in range(1, 4):
    time.sleep(0.3)
    print(f"epoch {epoch} done", flush=True)
    labtrain_job.report(epoch=epoch, loss=1 / epoch, accuracy=0.5 + epoch / 10, epochs=3)
(labtrain_job.outputs_dir() / "result.txt").write_text("accuracy 0.8\\n")
"""


def test_a_students_script_uploaded_from_the_form_draws_curves_logs_and_artifacts(page, stack, tmp_path):
    _base, tokens, _env = stack
    script = tmp_path / "train.py"
    script.write_text(STUDENT_SCRIPT)
    sign_in(page, tokens["alice"])
    page.click("[data-test=nav-submit]")
    page.select_option("[data-test=field-kind]", "code")
    page.click("[data-test=submit-job]")  # no file chosen yet: the form says so at the file input
    assert "choose a .py file" in page.inner_text("[data-test=form-message]")
    page.set_input_files("[data-test=field-code-file]", str(script))
    page.fill("[data-test=field-code-args]", "--unused 1")
    page.fill("[data-test=field-name]", "my-script")
    page.click("[data-test=submit-job]")
    job_id_of(page)
    page.wait_for_selector("#job-status:text('succeeded')", timeout=120_000)
    assert page.inner_text("[data-test=job-name]") == "my-script"
    page.wait_for_selector("[data-test=loss-chart][data-points='3']")
    page.wait_for_selector("[data-test=job-log]:has-text('epoch 3 done')")
    link = page.wait_for_selector("[data-test=artifact]")
    assert link.inner_text() == "result.txt"
    with page.expect_download() as download:
        link.click()
    assert Path(download.value.path()).read_text() == "accuracy 0.8\n"


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Notes every request: nothing in a rendered notebook may reach it."""

    seen: list[str] = []

    def do_GET(self):
        self.seen.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def listener():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], _Recorder.seen
    server.shutdown()


def hostile_notebook(port: int) -> str:
    """A notebook whose outputs hold a figure, and markup that would run script, fire a handler,
    frame a page and fetch from a local server if the dashboard let it."""
    markup = (
        f"<script>document.title = 'script ran'; fetch('http://127.0.0.1:{port}/from-script')</script>"
        f"<b id='bold'>bold words</b>"
        f"<img src='http://127.0.0.1:{port}/image.png' onerror=\"document.title = 'handler ran'\">"
        f"<img src='x' onerror=\"fetch('http://127.0.0.1:{port}/from-handler')\">"
        f"<iframe src='http://127.0.0.1:{port}/frame'></iframe>"
        f"<a href='javascript:parent.document.title=1' id='link'>link</a>"
        f"<svg><script>fetch('http://127.0.0.1:{port}/from-svg')</script></svg>"
    )
    book = new_notebook(
        cells=[
            new_markdown_cell("# Rendered here"),
            new_code_cell("print('printed by the cell')"),
            new_code_cell("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()"),
            new_code_cell(f"from IPython.display import HTML, display\ndisplay(HTML({markup!r}))"),
        ]
    )
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nbformat.writes(book)


def test_a_notebook_is_shown_rendered_with_its_students_markup_inert(page, stack, tmp_path, listener):
    _base, tokens, _env = stack
    port, seen = listener
    path = tmp_path / "week5.ipynb"
    path.write_text(hostile_notebook(port))
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    sign_in(page, tokens["alice"])
    page.click("[data-test=nav-submit]")
    page.select_option("[data-test=field-kind]", "code")
    page.set_input_files("[data-test=field-code-file]", str(path))
    page.click("[data-test=submit-job]")
    job_id_of(page)
    page.wait_for_selector("#job-status:text('succeeded')", timeout=120_000)

    notebook = page.frame_locator("[data-test=notebook-frame]")
    assert notebook.locator("h1").inner_text(timeout=TIMEOUT_MS) == "Rendered here"
    assert "printed by the cell" in notebook.locator("body").inner_text()
    assert notebook.locator("#bold").inner_text() == "bold words"  # harmless markup still shows
    figure = notebook.locator("img[src^='data:image/png']")
    assert figure.count() == 1 and figure.evaluate("img => img.naturalWidth") > 0
    assert notebook.locator("script, iframe, [onerror]").count() == 0
    assert notebook.locator("#link").get_attribute("href") is None  # javascript: links are dropped
    assert page.get_attribute("[data-test=notebook-frame]", "sandbox") == ""
    page.wait_for_timeout(1000)  # time for anything that had slipped through to run
    assert page.title() == "labtrain" and "ran" not in page.title()
    assert seen == []  # the local server heard nothing
    assert not [url for url in requests if f":{port}/" in url]

    with page.expect_download() as download:
        page.click("[data-test=notebook-download]")
    executed = nbformat.read(download.value.path(), as_version=4)
    assert executed.cells[1].outputs[0]["text"] == "printed by the cell\n"


def test_a_second_user_sees_none_of_the_first_users_jobs(page, stack):
    _base, tokens, _env = stack
    sign_in(page, tokens["alice"])
    page.wait_for_selector("[data-test=job-row]")
    alice_jobs = [row.get_attribute("data-job-id") for row in page.query_selector_all("[data-test=job-row]")]
    assert len(alice_jobs) >= 1

    page.click("[data-test=sign-out]")
    page.wait_for_selector("[data-test=signin-form]")
    sign_in(page, tokens["bob"])
    page.wait_for_selector("[data-test=no-jobs]")
    assert not page.query_selector_all("[data-test=job-row]")
    page.goto(f"/#/jobs/{alice_jobs[0]}")
    assert "no job with id" in page.wait_for_selector("[data-test=error-message]").inner_text()


def test_a_debug_job_and_a_preempted_job_say_so_on_their_page(page, stack):
    base, tokens, env = stack
    headers = {"Authorization": f"Bearer {tokens['alice']}"}
    spec = {"dataset": "iris", "algorithm": "knn", "tier": "debug"}
    job_id = requests.post(f"{base}/api/v1/jobs", json=spec, headers=headers, timeout=30).json()["id"]
    sign_in(page, tokens["alice"])
    page.goto(f"/#/jobs/{job_id}")
    page.wait_for_selector("#job-status:text('succeeded')", timeout=60_000)
    assert page.inner_text("[data-test=job-tier]").strip() == "debug"
    assert page.query_selector("[data-test=job-preemptions]") is None
    # A job that yielded its slot twice (what the dispatcher and the worker record, written here).
    engine = create_engine(env["LABTRAIN_DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET preemptions = 2 WHERE id = :id"), {"id": job_id})
    engine.dispose()
    page.reload()
    page.wait_for_selector("[data-test=job-preemptions]")
    assert page.inner_text("[data-test=job-preemptions]").startswith("Preempted 2 times")
