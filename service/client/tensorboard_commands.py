"""`labtrain tensorboard`: the TensorBoard event files jobs left in outputs/, downloaded one
folder per job (TensorBoard shows each as a run), and a local TensorBoard started on them."""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import click
import requests

from service.client.api import ApiError
from service.client.common import note
from service.client.lab import Job, Lab

START_TIMEOUT_S = 120  # TensorBoard loads TensorFlow first where it is installed
UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def is_event_file(path: str) -> bool:
    """TensorBoard's own rule: "tfevents" in the file's name."""
    return "tfevents" in PurePosixPath(path).name


@click.command()
@click.argument("job_ids", nargs=-1, required=True, metavar="JOB...")
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="Download into this folder (default: a new temporary one).",
)
@click.option("--port", type=click.IntRange(1, 65535), help="TensorBoard's port (default: a free one).")
@click.option("--no-start", is_flag=True, help="Only download, and print the command that starts TensorBoard.")
def tensorboard(job_ids: tuple[str, ...], folder: Path | None, port: int | None, no_start: bool) -> None:
    """Open jobs' TensorBoard logs (SummaryWriter, Keras's TensorBoard callback) in TensorBoard.

    \b
    labtrain tensorboard JOB1 JOB2 JOB3         # one run per job, in a local TensorBoard
    labtrain tensorboard JOB --dir tb --no-start
    The event files a job wrote under outputs/ (LABTRAIN_TENSORBOARD_DIR in the job) are
    downloaded into one folder per job, named after the job; Ctrl-C stops TensorBoard.
    """
    lab = Lab()
    folder = folder if folder is not None else Path(tempfile.mkdtemp(prefix="labtrain-tensorboard-"))
    runs: list[str] = []
    for job_id in job_ids:
        try:
            job = lab.job(job_id)
            files = [item["path"] for item in job.artifacts() if is_event_file(item["path"])]
        except ApiError as exc:
            note(f"job {job_id}: {exc.message}")
            continue
        if not files:
            note(
                f"job {job_id} has no TensorBoard event files (files named events.out.tfevents.* that it wrote "
                "under outputs/, listed once it ends)"
            )
            continue
        run = run_name(job.data, runs)
        written = download(job, files, folder / run)
        runs.append(run)
        note(f"job {job_id}: {len(written)} event file(s) in {folder / run}")
    if not runs:
        raise click.ClickException("none of these jobs has TensorBoard event files")
    if no_start:
        click.echo(shlex.join([*tensorboard_program(), "--logdir", str(folder)]))
        return
    serve(folder, port or free_port())


def run_name(job: dict, taken: list[str]) -> str:
    """The job's folder: its name as a safe folder name, else its id; its id too where two
    jobs share a name."""
    name = UNSAFE.sub("-", job.get("name") or "").strip(".-") or job["id"]
    return name if name not in taken else f"{name}-{job['id']}"


def download(job: Job, paths: list[str], into: Path) -> list[Path]:
    """Each artifact into `into`, its path kept; a path leading out of it (never sent by the
    server) is passed over."""
    written = []
    for path in paths:
        target = (into / path).resolve()
        if not target.is_relative_to(into.resolve()):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        response = job.lab.api.request("GET", f"/jobs/{job.id}/artifacts/{quote(path)}", stream=True)
        with open(target, "wb") as out:
            for chunk in response.iter_content(1024 * 1024):
                out.write(chunk)
        written.append(target)
    return written


def tensorboard_program() -> list[str]:
    """`tensorboard` where it is on PATH, else this Python's (the package is labtrain's dependency)."""
    return ["tensorboard"] if shutil.which("tensorboard") else [sys.executable, "-m", "tensorboard.main"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(folder: Path, port: int) -> None:
    """TensorBoard on `folder`, at 127.0.0.1:`port`, until it ends or Ctrl-C; its own output
    goes to tensorboard.log in the folder (TensorBoard reads only event files there)."""
    url = f"http://127.0.0.1:{port}/"
    log_path = folder / "tensorboard.log"
    command = [*tensorboard_program(), "--logdir", str(folder), "--host", "127.0.0.1", "--port", str(port)]
    signal.signal(signal.SIGTERM, _interrupted)  # stopped like Ctrl-C: TensorBoard goes with it
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        if not _answers(url, process):
            process.kill()
            process.wait()
            tail = log_path.read_text(errors="replace").strip().splitlines()[-10:]
            raise click.ClickException("TensorBoard did not start:\n" + "\n".join(tail))
        click.echo(f"TensorBoard on {folder}: {url}")
        note("Ctrl-C stops it")
        process.wait()
    except KeyboardInterrupt:
        note("\nstopping TensorBoard")
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _interrupted(_signal: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _answers(url: str, process: subprocess.Popen) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.3)
    return False
