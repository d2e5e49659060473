"""A notebook job's page, made by the worker from the executed notebook: its bounds (the
notebook's size, the page's size, the renderer's time), and what the job's result says when
there is no page. Unsandboxed (LABTRAIN_CODE_SANDBOX=off: a plain child process under
rlimits), so no sandbox is needed; tests/service/code covers the sandboxed renderer end to end.
"""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from service.core import storage
from service.core.config import Settings
from workers.trainers.code import notebook_page

pytestmark = pytest.mark.fast
JOB = "job1"


@pytest.fixture
def settings(tmp_path) -> Settings:
    settings = Settings.from_env_map({"LABTRAIN_HOME": str(tmp_path), "LABTRAIN_CODE_SANDBOX": "off"})
    storage.job_outputs_dir(settings, JOB).mkdir(parents=True)
    return settings


def executed(settings: Settings, text: str = "hello from a cell") -> None:
    book = new_notebook(cells=[new_markdown_cell("# Title"), new_code_cell(f"print({text!r})")])
    nbformat.write(book, storage.job_outputs_dir(settings, JOB) / "train.ipynb")


def make(settings: Settings) -> dict:
    return notebook_page.make_page(settings, JOB, 1, "train", None)


def test_the_page_is_rendered_and_stored_beside_the_outputs_never_among_them(settings):
    executed(settings)
    (storage.job_outputs_dir(settings, JOB) / "train.html").write_text("<script>the job's own</script>")
    assert make(settings) == {"page": True}
    page = storage.notebook_page_path(settings, JOB).read_text()
    assert "hello from a cell" in page and "the job's own" not in page
    assert sorted(p.name for p in storage.job_dir(settings, JOB).iterdir()) == ["notebook.html", "outputs"]


def test_a_notebook_over_the_bound_gets_no_page_and_the_result_says_why(settings, monkeypatch):
    executed(settings, "x" * 5000)
    storage.notebook_page_path(settings, JOB).write_text("an earlier attempt's page")
    monkeypatch.setattr(notebook_page, "MAX_NOTEBOOK_BYTES", 4000)
    monkeypatch.setattr(notebook_page, "render", lambda *args: pytest.fail("rendered a notebook over the bound"))
    answer = make(settings)
    assert answer["page"] is False and "larger than" in answer["page_error"]
    assert not storage.notebook_page_path(settings, JOB).exists()


def test_a_page_over_the_bound_is_cut_by_the_file_size_limit_and_refused(settings, monkeypatch):
    executed(settings)
    monkeypatch.setattr(notebook_page, "MAX_PAGE_BYTES", 2000)
    answer = make(settings)
    assert answer["page"] is False and "could not be rendered" in answer["page_error"], answer
    assert not storage.notebook_page_path(settings, JOB).exists()


def test_a_renderer_past_its_time_is_stopped(settings, monkeypatch):
    executed(settings)
    monkeypatch.setattr(notebook_page, "RENDER_TIMEOUT_S", 0.01)
    answer = make(settings)
    assert answer == {"page": False, "page_error": "rendering took longer than 0 s: no page was made"}


def test_what_is_not_a_notebook_or_not_a_file_gets_no_page(settings):
    assert make(settings) == {"page": False, "page_error": "the executed notebook is not there"}
    (storage.job_outputs_dir(settings, JOB) / "train.ipynb").write_text("{not json")
    answer = make(settings)
    assert answer["page"] is False and answer["page_error"].startswith("the notebook could not be rendered: ")
    (storage.job_outputs_dir(settings, JOB) / "train.ipynb").unlink()
    (storage.job_outputs_dir(settings, JOB) / "train.ipynb").symlink_to("/etc/hostname")
    assert make(settings)["page"] is False


def test_a_page_with_a_script_is_refused():
    with pytest.raises(notebook_page.NoPage):
        notebook_page.check_page(b"<p>ok</p><SCRIPT src=x></script>")
    with pytest.raises(notebook_page.NoPage):
        notebook_page.check_page(b"\xff\xfe")
    notebook_page.check_page("<p>&lt;script&gt; shown as text</p> é".encode())
