"""`labtrain run` (a script or a project as a job, watched until it ends) and `labtrain
artifacts` (what a job left in outputs/), built on the Python API (service/client/lab.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from service.client import display
from service.client.common import emit_json, json_option, note
from service.client.lab import Lab, memory_mb
from service.client.watch import follow


@click.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--entrypoint", help="The script or notebook to run in a folder (default: its only one).")
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A notebook parameter (set after its cell tagged `parameters`); VALUE is read as JSON, else as text.",
)
@click.option("--dataset", help="A built-in data set (mnist, iris, ...) or an uploaded data set's id.")
@click.option("--gpu", is_flag=True, help="Run on a GPU worker.")
@click.option("--queue", help="The queue to run in: cpu, gpu or a named one (`labtrain queue` lists them).")
@click.option("--memory", help="Memory the job may use: 4G, 512M (default: the server's).")
@click.option("--cpus", type=click.IntRange(1), help="CPUs its processes may use at once.")
@click.option("--time-limit", "time_limit_s", type=click.IntRange(1), help="Seconds it may run.")
@click.option("--name", help="The job's name (default: the file's or folder's).")
@click.option("--course", help="The course it is for (default: your only course).")
@click.option(
    "--download", "download_to", type=click.Path(path_type=Path), help="Download its outputs here when it ends."
)
@click.option("--no-watch", is_flag=True, help="Submit, print the job id and return.")
@json_option
def run(
    path: Path,
    args: tuple[str, ...],
    entrypoint: str | None,
    params: tuple[str, ...],
    dataset: str | None,
    gpu: bool,
    queue: str | None,
    memory: str | None,
    cpus: int | None,
    time_limit_s: int | None,
    name: str | None,
    course: str | None,
    download_to: Path | None,
    no_watch: bool,
    as_json: bool,
) -> None:
    """Run your own script (or a folder) as a job, in a sandbox on the server, and watch it.

    \b
    labtrain run train.py --dataset mnist -- --epochs 5 --lr 0.001
    labtrain run . --entrypoint train.py --gpu --memory 8G
    labtrain run week5.ipynb --dataset mnist -p epochs=3 -p lr=0.01
    Everything after `--` goes to the script. In the script, `import labtrain_job` and call
    labtrain_job.report(epoch=..., loss=...) for live curves; files saved to
    labtrain_job.outputs_dir() become the job's artifacts.
    """
    try:
        memory_value = memory_mb(memory) if memory else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--memory") from None
    parameters = dict(_parameter(param) for param in params)
    lab = Lab()
    chosen_dataset = {"id": dataset} if dataset and len(dataset) == 22 and dataset.isalnum() else dataset
    job = lab.run(
        path,
        *args,
        entrypoint=entrypoint,
        parameters=parameters,
        dataset=chosen_dataset,
        gpu=gpu,
        queue=queue,
        memory=memory_value,
        cpus=cpus,
        time_limit_s=time_limit_s,
        name=name,
        course=course,
    )
    if no_watch:
        return emit_json(job.data) if as_json else click.echo(job.id)
    if not as_json:
        note(f"job {job.id} submitted; following it (Ctrl-C stops following, not the job)")
    try:
        if as_json:
            job.wait()
        else:
            follow(lab.api, job.id, 0.5)  # the live progress line, as `labtrain watch` draws it
    except KeyboardInterrupt:
        note(f"\nstopped watching; the job goes on (`labtrain cancel {job.id}` stops it)")
        sys.exit(130)
    finished = job.refresh()
    if download_to is not None and finished.status in ("succeeded", "failed"):
        for written in finished.download(download_to):
            note(f"downloaded {written}")
    if as_json:
        emit_json(finished.data)
    else:
        for line in display.final_lines(finished.data):
            click.echo(line)
    sys.exit(0 if finished.status == "succeeded" else 1)


@click.command()
@click.argument("job_id")
@click.option("--download", "download_to", type=click.Path(path_type=Path), help="Download them into this folder.")
@json_option
def artifacts(job_id: str, download_to: Path | None, as_json: bool) -> None:
    """The files a code job left in its outputs/ folder; --download fetches them."""
    job = Lab().job(job_id)
    items = job.artifacts()
    if download_to is not None:
        for written in job.download(download_to):
            note(f"downloaded {written}")
    if as_json:
        return emit_json({"id": job_id, "items": items})
    if not items:
        note(f"job {job_id} has no artifacts (files a code job writes to outputs/ are listed once it ends)")
    for item in items:
        click.echo(f"{item['size']:>12}  {item['path']}")


def _parameter(text: str) -> tuple[str, object]:
    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise click.BadParameter(f"{text!r} is not NAME=VALUE", param_hint="--param")
    try:
        return name.strip(), json.loads(value)
    except ValueError:
        return name.strip(), value  # plain text: -p optimizer=adam
