"""labtrain from Python, in a notebook or a script: upload code, run it as a job, wait for it,
read its metrics and download what it wrote. `labtrain run` is built on this.

    from service.client.lab import Lab

    lab = Lab()                      # the login `labtrain login` saved (or LABTRAIN_URL and LABTRAIN_TOKEN)
    job = lab.run("train.py", "--epochs", "5", dataset="mnist", memory="4G")
    job.wait()
    print(job.status, job.metrics)
    job.download("results/")         # the files it left in outputs/
"""

from __future__ import annotations

import io
import os
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.client.api import Api
from service.client.config import Login, current_login
from service.client.status_stream import StatusStream
from service.client.uploads import Payload, send

TERMINAL = ("succeeded", "failed", "cancelled")
# Left out when a folder is uploaded: version control, environments, caches and what jobs write.
SKIPPED_DIRS = {
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    "env",
    "__pycache__",
    ".ipynb_checkpoints",
    ".mypy_cache",
    ".pytest_cache",
    "outputs",
    "checkpoints",
    "node_modules",
}
UNITS = {"": 1, "m": 1, "mb": 1, "g": 1024, "gb": 1024, "t": 1024 * 1024}


class Lab:
    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 60):
        login = Login(url, token) if url and token else current_login()
        self.api = Api(login, timeout=timeout)

    # -- code ------------------------------------------------------------------------------
    def upload(self, path: str | Path, name: str | None = None) -> dict[str, Any]:
        """A .py file as it is, or a folder as a zip of its files (caches, environments and
        links left out); returns the source as the API describes it. A large one goes as a
        resumable upload (service/client/uploads.py)."""
        path = Path(path)
        if path.is_dir():
            payload = Payload.of_bytes(f"{path.resolve().name or 'project'}.zip", zip_folder(path))
        else:
            payload = Payload.of_file(path)
        return send(self.api, payload, "source", "/sources", {"name": name or payload.filename})

    def run(
        self,
        path: str | Path,
        *args: str,
        entrypoint: str | None = None,
        parameters: dict[str, Any] | None = None,
        dataset: Any = None,
        gpu: bool = False,
        queue: str | None = None,
        memory: str | int | None = None,
        cpus: int | None = None,
        time_limit_s: int | None = None,
        name: str | None = None,
        course: str | None = None,
    ) -> Job:
        """Upload `path` and run it as a code job; returns the job (queued). `parameters` are a
        notebook's (set after its cell tagged `parameters`)."""
        path = Path(path)
        source = self.upload(path)
        if entrypoint is None and path.is_file():
            entrypoint = path.name
        spec: dict[str, Any] = {"code": {"source": source["id"], "args": list(args)}}
        if entrypoint:
            spec["code"]["entrypoint"] = entrypoint
        if parameters:
            spec["code"]["parameters"] = parameters
        if dataset is not None:
            spec["dataset"] = dataset
        if gpu:
            spec["device"] = "gpu"
        if queue:
            spec["queue"] = queue  # cpu, gpu or a named one (GET /api/v1/queue)
        resources = {
            "memory_mb": memory_mb(memory) if memory is not None else None,
            "cpus": cpus,
            "time_limit_s": time_limit_s,
        }
        if any(v is not None for v in resources.values()):
            spec["resources"] = {k: v for k, v in resources.items() if v is not None}
        spec["name"] = name or (path.name if path.is_file() else path.resolve().name)
        if course:
            spec["course"] = course
        return self.submit(spec)

    # -- jobs ------------------------------------------------------------------------------
    def submit(self, spec: dict[str, Any]) -> Job:
        return Job(self, self.api.post("/jobs", json=spec))

    def job(self, job_id: str) -> Job:
        return Job(self, self.api.get(f"/jobs/{job_id}"))


class Job:
    """A job as last read; `refresh()` and `wait()` read it again."""

    def __init__(self, lab: Lab, data: dict[str, Any]):
        self.lab, self.data = lab, data

    id = property(lambda self: self.data["id"])
    status = property(lambda self: self.data["status"])
    metrics = property(lambda self: self.data.get("metrics") or {})
    result = property(lambda self: self.data.get("result") or {})
    error = property(lambda self: self.data.get("error"))

    def refresh(self) -> Job:
        self.data = self.lab.api.get(f"/jobs/{self.id}")
        return self

    def wait(
        self, timeout: float | None = None, poll: float = 1.0, on_change: Callable[[Job], None] | None = None
    ) -> Job:
        """Until the job ends (or `timeout` seconds pass: TimeoutError); `on_change` sees each new state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = None
        with StatusStream(self.lab.api, self.id) as stream:  # its end heard at once, not at the next look
            while True:
                self.refresh()
                state = (self.status, self.data.get("progress"))
                if on_change and state != seen:
                    on_change(self)
                    seen = state
                if self.status in TERMINAL:
                    return self
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"job {self.id} is still {self.status} after {timeout} s")
                stream.wait(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))

    def events(self, after: int = 0) -> list[dict[str, Any]]:
        return self.lab.api.get(f"/jobs/{self.id}/events", after=after)["items"]

    def epochs(self) -> list[dict[str, Any]]:
        """The epochs it reported, in order: {"epoch", "loss", "accuracy", ...}."""
        return [e["data"] for e in self.events() if e["type"] == "epoch"]

    def log(self) -> str:
        return self.lab.api.request("GET", f"/jobs/{self.id}/log").text

    def artifacts(self) -> list[dict[str, Any]]:
        return self.lab.api.get(f"/jobs/{self.id}/artifacts")["items"]

    def download(self, folder: str | Path = ".") -> list[Path]:
        """Every artifact into `folder` (its paths kept), and a notebook's page as <name>.html;
        returns the files written."""
        folder = Path(folder)
        wanted = [(item["path"], f"/jobs/{self.id}/artifacts/{item['path']}") for item in self.artifacts()]
        notebook = self.result.get("notebook") or {}
        if notebook.get("page") and isinstance(notebook.get("executed"), str):  # the page the worker rendered
            wanted.append((f"{Path(notebook['executed']).stem}.html", f"/jobs/{self.id}/notebook"))
        written = []
        for path, route in wanted:
            target = (folder / path).resolve()
            if not target.is_relative_to(folder.resolve()):  # a name the server should never send
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            response = self.lab.api.request("GET", route, stream=True)
            with open(target, "wb") as out:
                for chunk in response.iter_content(1024 * 1024):
                    out.write(chunk)
            if target not in written:
                written.append(target)
        return written

    def cancel(self) -> Job:
        self.lab.api.post(f"/jobs/{self.id}/cancel")
        return self.refresh()

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.status}>"


def zip_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not (Path(root) / d).is_symlink())
            for name in sorted(files):
                path = Path(root) / name
                if path.is_symlink() or not path.is_file() or name.endswith(".pyc"):
                    continue
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def memory_mb(value: str | int) -> int:
    """4G, 512M, 4096 (MB) as megabytes."""
    if isinstance(value, int):
        return value
    text = value.strip().lower()
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(number) :]
    if unit not in UNITS or not number:
        raise ValueError(f"memory {value!r}: write it as 4G, 512M or a number of megabytes")
    return int(float(number) * UNITS[unit])
