"""`labtrain predict` and `download`: using a trained model."""

from __future__ import annotations

import json
import mimetypes
import os
import sys
from contextlib import ExitStack
from email.message import Message
from pathlib import Path
from typing import Any

import click

from service.client.common import connect, emit_json, json_option


@click.command()
@click.argument("model_id")
@click.option(
    "--file",
    "files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="An image (PNG, BMP, JPEG) for an image model; repeat for more.",
)
@click.option(
    "--instances",
    help="Rows of features or arrays of the input shape, as JSON: '[[5.1, 3.5, 1.4, 0.2]]'; - reads them from stdin.",
)
@json_option
def predict(model_id: str, files: tuple[str, ...], instances: str | None, as_json: bool) -> None:
    """Ask a model for predictions on images (--file) or JSON instances (--instances)."""
    if bool(files) == bool(instances):
        raise click.UsageError("give either --file (one or more images) or --instances JSON")
    api = connect()
    if files:
        with ExitStack() as stack:
            parts = [
                (
                    "file",
                    (
                        Path(f).name,
                        stack.enter_context(open(f, "rb")),
                        mimetypes.guess_type(f)[0] or "application/octet-stream",
                    ),
                )
                for f in files
            ]
            answer = api.post(f"/models/{model_id}/predict", files=parts)
        names = [Path(f).name for f in files]
    else:
        rows = _instances(instances)
        answer = api.post(f"/models/{model_id}/predict", json={"instances": rows})
        names = [f"row {i}" for i in range(len(rows))]
    if as_json:
        return emit_json(answer)
    labels = answer.get("labels") or answer.get("predictions") or []
    probabilities = answer.get("probabilities") or [None] * len(labels)
    for name, label, probs in zip(names, labels, probabilities):
        sure = f"  (p={max(probs):.3f})" if probs else ""
        click.echo(f"{name}: {_value(label)}{sure}")


def _instances(text: str) -> list[Any]:
    try:
        rows = json.loads(sys.stdin.read() if text == "-" else text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--instances") from None
    if isinstance(rows, dict) and "instances" in rows:
        rows = rows["instances"]
    if not isinstance(rows, list):
        raise click.BadParameter("must be a JSON list of instances", param_hint="--instances")
    return rows


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@click.command()
@click.argument("model_id")
@click.option("-o", "--output", type=click.Path(), help="File or folder to write (default: the server's file name).")
@click.option("--force", is_flag=True, help="Replace an existing file.")
@json_option
def download(model_id: str, output: str | None, force: bool, as_json: bool) -> None:
    """Save a model's artifact file (.keras, PyTorch weights, skops ...)."""
    response = connect().request("GET", f"/models/{model_id}/download", stream=True)
    name = _attachment_name(response.headers.get("Content-Disposition")) or f"{model_id}.bin"
    path = Path(output) if output else Path(name)
    if path.is_dir():
        path = path / name
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists; use --force to replace it or -o for another name")
    # Written beside the target and renamed, so an interrupted download leaves no half file under its name.
    partial = path.with_name(f".{path.name}.part")
    size = 0
    try:
        with open(partial, "wb") as handle:
            for chunk in response.iter_content(1 << 16):
                handle.write(chunk)
                size += len(chunk)
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise click.ClickException(f"cannot write {path}: {exc.strerror}") from None
    if as_json:
        emit_json({"model_id": model_id, "path": str(path), "bytes": size})
    else:
        click.echo(f"saved model {model_id} to {path} ({size} bytes)")


def _attachment_name(header: str | None) -> str | None:
    if not header:
        return None
    message = Message()
    message["content-disposition"] = header
    name = message.get_filename()
    # Only a bare file name: a server cannot make us write outside the current folder.
    name = Path(name).name if name else ""
    return name if name not in ("", ".", "..") else None
