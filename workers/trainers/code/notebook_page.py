"""A notebook job's page: its executed notebook as HTML, rendered by a renderer the job
cannot touch.

Inside the job the notebook runner only writes outputs/<stem>.ipynb. Once the job's sandbox
is gone, a short sandbox of its own (service/sandbox: no network, its own cgroup, memory,
CPU-time and file-size limits, the renderer's code read-only) runs labtrain_job.render with
a size-bounded copy of that notebook as its only input, read-only, and writes the page into
a fresh folder the job never had. The page comes back bounded in size, is checked for
scripts and frames once more, and is stored at storage.notebook_page_path, which the API
serves with a sandboxing Content-Security-Policy. Whatever the job wrote at outputs/<stem>.html
stays one of its artifacts, never the page. A page that cannot be made fails nothing: the
job's result says why there is none.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from service.core import storage
from service.core.config import Settings
from service.sandbox.box import JOB_ROOT, SANDBOX_UID, Mount, Sandbox, SandboxSpec, interpreter
from service.sandbox.cgroups import CgroupError, Hierarchy, Limits

MB = 1024 * 1024
MAX_NOTEBOOK_BYTES = 50 * MB  # a larger executed notebook gets no page
MAX_PAGE_BYTES = 100 * MB  # the page embeds the notebook's figures: about its size, plus the template
RENDER_MEMORY_BYTES = 2048 * MB
RENDER_TIMEOUT_S = 120.0
RENDER_MAX_PROCESSES = 32  # its cgroup's: threads count too
NOTEBOOK_INSIDE = "/input/notebook.ipynb"
PAGE_INSIDE = f"{JOB_ROOT}/page.html"
# What the sanitizer removed; its reappearance means the page is not the renderer's work.
_ACTIVE = re.compile(rb"<\s*/?\s*(script|iframe|frame|object|embed|applet|base|form)\b", re.IGNORECASE)


class NoPage(Exception):
    """Why a notebook job has no page."""


def make_page(settings: Settings, job_id: str, attempt: int, stem: str, hierarchy: Hierarchy | None) -> dict[str, Any]:
    """Renders outputs/<stem>.ipynb into the job's page; what the job's result says of it."""
    page_path = storage.notebook_page_path(settings, job_id)
    page_path.unlink(missing_ok=True)  # an earlier attempt's page is not this one's
    executed = storage.job_outputs_dir(settings, job_id) / f"{stem}.ipynb"
    try:
        notebook = read_bounded(executed, MAX_NOTEBOOK_BYTES, "the executed notebook")
        scratch = storage.job_dir(settings, job_id)
        page = render(settings, f"{job_id}-{attempt}-page", notebook, scratch, hierarchy)
        check_page(page)
        storage.write_atomically(page_path, page)
    except NoPage as exc:
        return {"page": False, "page_error": str(exc)}
    except (OSError, subprocess.SubprocessError, CgroupError) as exc:  # the job's work is done; its page is extra
        return {"page": False, "page_error": f"the page could not be made: {exc}"}
    return {"page": True}


def read_bounded(path: Path, most: int, what: str) -> bytes:
    """A regular file's bytes, reached through no link, refused past `most`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise NoPage(f"{what} is not there") from None
    except OSError as exc:
        raise NoPage(f"{what} could not be read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise NoPage(f"{what} is not a regular file")
        data = file.read(most + 1)
    if len(data) > most:
        raise NoPage(f"{what} is larger than {most // MB} MB: no page was made")
    return data


def render(settings: Settings, name: str, notebook: bytes, scratch: Path, hierarchy: Hierarchy | None) -> bytes:
    """The page labtrain_job.render makes of `notebook`, in a sandbox named `name` working in a
    fresh folder under `scratch` (a plain child process under rlimits where sandboxes are off)."""
    folder = Path(tempfile.mkdtemp(prefix="notebook-page-", dir=scratch))
    try:
        source, workdir = folder / "notebook.ipynb", folder / "out"
        source.write_bytes(notebook)
        source.chmod(0o644)
        workdir.mkdir()
        if os.geteuid() == 0:  # the renderer runs as nobody
            os.chown(workdir, SANDBOX_UID, SANDBOX_UID)
        enforce = settings.code_sandbox == "required"
        box = Sandbox(_spec(name, workdir, source), hierarchy if enforce else None, _ignore, enforce=enforce)
        try:
            box.start()
            try:
                returncode = box.wait(timeout=RENDER_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise NoPage(f"rendering took longer than {RENDER_TIMEOUT_S:.0f} s: no page was made") from None
            if box.oom_killed():
                raise NoPage(f"rendering needed more than {RENDER_MEMORY_BYTES // MB} MB: no page was made")
        finally:
            box.close()
        if returncode != 0:
            last = box.stderr_tail[-1][:300] if box.stderr_tail else f"status {returncode}"
            raise NoPage(f"the notebook could not be rendered: {last}")
        return read_bounded(workdir / "page.html", MAX_PAGE_BYTES, "the rendered page")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _spec(name: str, workdir: Path, source: Path) -> SandboxSpec:
    # prlimit inside too: where sandboxes are off it is the only bound on memory and CPU time.
    limits = [f"--as={RENDER_MEMORY_BYTES}", f"--cpu={max(1, int(RENDER_TIMEOUT_S))}"]
    return SandboxSpec(
        name=name,
        workdir=workdir,
        argv=["prlimit", *limits, "--", interpreter(), "-m", "labtrain_job.render", NOTEBOOK_INSIDE, PAGE_INSIDE],
        cwd=JOB_ROOT,
        env={"JUPYTER_PLATFORM_DIRS": "1"},
        limits=Limits(memory_bytes=RENDER_MEMORY_BYTES, max_processes=RENDER_MAX_PROCESSES, cpus=1),
        file_size_limit=MAX_PAGE_BYTES + 1,
        mounts=[Mount(source, NOTEBOOK_INSIDE)],
    )


def check_page(page: bytes) -> None:
    """The renderer's sanitizer already ran; this refuses a page where it plainly did not."""
    try:
        page.decode("utf-8")
    except UnicodeDecodeError:
        raise NoPage("the rendered page is not UTF-8 text: no page was made") from None
    if _ACTIVE.search(page):
        raise NoPage("the rendered page held a script or a frame: no page was made")


def _ignore(stream: str, line: str) -> None:
    """The renderer's output is not the job's log (its last stderr line says why it failed)."""
