"""`labtrain datasets ...`: your data sets from the command line: upload one (a large file goes
in chunks and resumes after a broken connection: service/client/uploads.py) and list them. The
server's own `fetch` (install a built-in data set) joins this group in service/cli/__init__.py."""

from __future__ import annotations

from pathlib import Path

import click

from service.client import display
from service.client.common import connect, emit_json, json_option, note
from service.client.uploads import Payload, send


@click.group()
def datasets() -> None:
    """Data sets: upload yours (CSV, NPZ, a zip of class folders), list them; an admin installs
    the built-in ones on the server (fetch)."""


@datasets.command("upload")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", help="Its name (default: the file's).")
@click.option("--target", help="A CSV's column to predict (the default target of jobs on it).")
@json_option
def upload(file: Path, name: str | None, target: str | None, as_json: bool) -> None:
    """Upload a data set: a CSV with a header row, an NPZ with arrays x and y, or a .zip of class
    folders. A large file goes in chunks with a progress line; if the connection breaks it resumes
    by itself, and running the same command again resumes what did not finish.

    \b
    labtrain datasets upload train.csv --target label
    labtrain datasets upload photos.zip --name flowers
    """
    api = connect()
    dataset = send(api, Payload.of_file(file), "dataset", "/datasets", {"name": name, "target": target})
    if as_json:
        return emit_json(dataset)
    click.echo(dataset["id"])
    note(
        f"{dataset['name']}: {dataset.get('kind')}, {dataset.get('rows')} rows; "
        f'specs name it "dataset": {{"id": "{dataset["id"]}"}}'
    )


@datasets.command("list")
@json_option
def list_datasets(as_json: bool) -> None:
    """The built-in data sets and yours."""
    items = connect().get("/datasets")["items"]
    if as_json:
        return emit_json(items)
    rows = [
        [d["id"], d.get("name"), "built-in" if d.get("builtin") else d.get("kind"), d.get("rows"), d.get("target")]
        for d in items
    ]
    click.echo(display.table(["ID", "NAME", "KIND", "ROWS", "TARGET"], rows))
