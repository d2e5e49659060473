"""`labtrain submit`, `jobs`, `status`, `watch`, `logs` and `cancel`."""

from __future__ import annotations

import sys
from typing import Any

import click

from service.client import display
from service.client.api import Api
from service.client.common import connect, emit_json, json_option, note
from service.client.display import TERMINAL
from service.client.spec import merge, no_spec_message, read_spec_file, spec_from_flags
from service.client.status_stream import StatusStream
from service.client.watch import follow

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


@click.command()
@click.argument("file", required=False)
@click.option("--name", help="A name for the job.")
@click.option("--course", help="The course it is for (default: your only course).")
@click.option("--dataset", help="Built-in data set (iris, mnist, ...) or an uploaded data set's id.")
@click.option("--target", help="The target column of an uploaded data set.")
@click.option("--algorithm", help="Classic algorithm: knn, svm, random_forest, ...")
@click.option("--param", multiple=True, metavar="NAME=VALUE", help="Algorithm parameter; repeat for more.")
@click.option("--framework", help="Train a network with this framework (`labtrain algorithms` lists them).")
@click.option("--network", metavar="PRESET", help="Network preset: mlp, feedforward, lenet.")
@click.option("--epochs", type=int)
@click.option("--batch-size", type=int)
@click.option("--learning-rate", type=float)
@click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]))
@click.option("--queue", help="The queue to run in: cpu, gpu or a named one (`labtrain queue` lists them).")
@click.option("--cv", type=int, help="Folds of cross-validation.")
@click.option("--search", metavar="STRATEGY", help="Hyperparameter search: grid, random, tpe, ga, pso, ...")
@click.option(
    "--space",
    multiple=True,
    metavar="NAME=TYPE:...",
    help="Search dimension: n=int:1:30, lr=float:1e-4:0.1:log, w=cat:uniform,distance.",
)
@click.option("--space-json", help="Search dimensions as a JSON object (as API.md writes them).")
@click.option("--trials", type=int)
@click.option("--parallel", type=int)
@click.option("--metric", help="The search's score (default: by task).")
@click.option("--watch", "then_watch", is_flag=True, help="Then watch the job until it ends.")
@json_option
def submit(file: str | None, then_watch: bool, as_json: bool, **options: Any) -> None:
    """Submit a job: FILE (YAML or JSON; - for stdin) and/or flags.

    \b
    labtrain submit job.yaml
    labtrain submit --dataset iris --algorithm knn --param n_neighbors=5 --cv 5
    labtrain submit --dataset mnist --framework pytorch --network lenet --epochs 5
    labtrain submit --dataset wine --algorithm knn --search ga --trials 20 --parallel 4 \\
        --space n_neighbors=int:1:30 --space weights=cat:uniform,distance
    """
    spec = merge(read_spec_file(file) if file else {}, spec_from_flags(options))
    api = connect()
    if not spec:  # what else a spec needs, the server says (naming the field)
        raise click.UsageError(no_spec_message(api.get("/algorithms")))
    job = api.post("/jobs", json=spec)
    if as_json and not then_watch:
        return emit_json(job)
    if not as_json:
        click.echo(job["id"])  # alone on stdout, for JOB=$(labtrain submit ...)
        where = f", position {job['position']} in the {job['queue']} queue" if job.get("position") else ""
        note(f"submitted {job.get('name') or 'job'}: {job['status']}{where}")
    if then_watch:
        _watch(api, job["id"], 0.5, as_json)


@click.command()
@click.option("--status", type=click.Choice(STATUSES), help="Only jobs in this state.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500), help="Jobs per page.")
@click.option("--all", "all_pages", is_flag=True, help="Every job, page after page.")
@json_option
def jobs(status: str | None, limit: int, all_pages: bool, as_json: bool) -> None:
    """Your jobs, newest first (an admin sees everyone's)."""
    api = connect()
    items, cursor = [], None
    while True:
        page = api.get("/jobs", status=status, limit=limit, cursor=cursor)
        items += page["items"]
        cursor = page.get("next_cursor")
        if not all_pages or not cursor:
            break
    if as_json:
        return emit_json({"items": items, "next_cursor": cursor})
    if not items:
        return note("no jobs")
    click.echo(
        display.table(
            ["ID", "NAME", "STATUS", "PROGRESS", "POSITION", "AGE"],
            [
                [
                    j["id"],
                    j.get("name"),
                    j["status"],
                    display.percent(j),
                    j.get("position"),
                    display.duration(display.seconds_since(j.get("created_at"))),
                ]
                for j in items
            ],
        )
    )
    if cursor:
        note(f"more jobs: --all, or --limit above {limit}")


@click.command()
@click.argument("job_id")
@json_option
def status(job_id: str, as_json: bool) -> None:
    """One job: its state, progress, metrics and model."""
    job = connect().get(f"/jobs/{job_id}")
    if as_json:
        return emit_json(job)
    click.echo(f"job {job['id']} {job.get('name') or ''}".rstrip())
    click.echo(f"  owner: {job.get('owner')}  family: {job.get('family')}  queue: {job.get('queue')}")
    line = display.progress_text(job)
    timing = display.eta_text(job)
    click.echo(f"  {line}" + (f"  ({timing})" if timing else ""))
    if job["status"] in TERMINAL:
        for text in display.final_lines(job)[1:]:
            click.echo(text)
    click.echo(
        f"  created {job.get('created_at')}, started {job.get('started_at') or '-'}, "
        f"finished {job.get('finished_at') or '-'}"
    )


@click.command()
@click.argument("job_id")
@click.option("--interval", default=0.5, show_default=True, type=click.FloatRange(0.1), help="Seconds between looks.")
@json_option
def watch(job_id: str, interval: float, as_json: bool) -> None:
    """Follow a job until it ends; exit 0 if it succeeded, 1 if it failed or was cancelled."""
    _watch(connect(), job_id, interval, as_json)


def _watch(api: Api, job_id: str, interval: float, as_json: bool) -> None:
    try:
        job = _wait(api, job_id, interval) if as_json else follow(api, job_id, interval)
    except KeyboardInterrupt:
        note(f"\nstopped watching; the job goes on (`labtrain cancel {job_id}` stops it)")
        sys.exit(130)
    if as_json:
        emit_json(job)
    else:
        for line in display.final_lines(job):
            click.echo(line)
    sys.exit(0 if job["status"] == "succeeded" else 1)


def _wait(api: Api, job_id: str, interval: float) -> dict[str, Any]:
    with StatusStream(api, job_id) as stream:  # its end heard at once (service/client/status_stream.py)
        while True:
            job = api.get(f"/jobs/{job_id}")
            if job["status"] in TERMINAL:
                return job
            stream.wait(interval)


MAX_LOG_CHUNK = 4 * 1024 * 1024  # what the API returns at most per request


@click.command()
@click.argument("job_id")
@click.option("-f", "--follow", "keep_following", is_flag=True, help="Keep printing new lines until the job ends.")
@click.option("--interval", default=0.5, show_default=True, type=click.FloatRange(0.1))
@json_option
def logs(job_id: str, keep_following: bool, interval: float, as_json: bool) -> None:
    """A job's log (what its training printed)."""
    api = connect()
    offset, text = 0, ""
    stream = StatusStream(api, job_id) if keep_following else None  # its end heard at once
    try:
        while True:
            # The job before the log: once the job has ended, the log read after it is complete.
            job = api.get(f"/jobs/{job_id}")
            response = api.request("GET", f"/jobs/{job_id}/log", params={"offset": offset})
            offset = int(response.headers.get("X-Log-Offset", offset + len(response.content)))
            text += response.text
            if not as_json:
                click.echo(response.text, nl=False)
            if response.content and offset and len(response.content) >= MAX_LOG_CHUNK:
                continue  # more is waiting: read it before sleeping
            if stream is None or job["status"] in TERMINAL:
                break
            stream.wait(interval)
    finally:
        if stream is not None:
            stream.close()
    if as_json:
        emit_json({"id": job_id, "status": job["status"], "log": text})


@click.command()
@click.argument("job_id")
@json_option
def cancel(job_id: str, as_json: bool) -> None:
    """Cancel a job: a queued one at once, a running one within a batch or trial."""
    answer = connect().post(f"/jobs/{job_id}/cancel")
    if as_json:
        return emit_json(answer)
    if answer["status"] == "cancelled":
        click.echo(f"job {job_id} cancelled")
    else:
        click.echo(f"job {job_id}: cancel requested; it stops within one batch or trial")
