"""Sending a file to the server: small ones in one multipart request, larger ones as a resumable
upload (the tus 1.0.0 protocol, /api/v1/uploads: docs/uploads.md) in chunks, with a progress
line on stderr, then turned into a data set or a source by the route that takes it.

A broken connection is retried by itself: it asks the server for the offset it reached (HEAD)
and goes on from there, a few times with a growing pause. An upload that still did not
finish is remembered (uploads.json beside the login, keyed by the server, the file's path,
size and modification time), so running the same command again resumes it instead of
starting over. Written with requests alone: the tus client for Python (tuspy) would bring
aiohttp and tinydb for what is a few HTTP requests here.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import click
import requests

from service.client.api import Api, _error, _json
from service.client.config import config_path

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"
MIB = 1024 * 1024
RETRIES_ENV = "LABTRAIN_UPLOAD_RETRIES"
BROKEN = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


@dataclass
class Payload:
    """What to send: a file on disk, or bytes made here (a folder zipped)."""

    filename: str
    size: int
    key: str  # what makes it the same upload on a later run
    open: Callable[[], IO[bytes]]

    @classmethod
    def of_file(cls, path: Path, filename: str | None = None) -> Payload:
        info = path.stat()
        key = f"{path.resolve()}|{info.st_size}|{info.st_mtime_ns}"
        return cls(filename or path.name, info.st_size, key, lambda: open(path, "rb"))

    @classmethod
    def of_bytes(cls, filename: str, data: bytes) -> Payload:
        key = f"{filename}|sha256:{hashlib.sha256(data).hexdigest()}"
        return cls(filename, len(data), key, lambda: io.BytesIO(data))


def send(
    api: Api,
    payload: Payload,
    kind: str,
    route: str,
    fields: dict[str, str | None],
    threshold: int = 8 * MIB,
    chunk: int = 8 * MIB,
) -> Any:
    """POST `payload` to `route` (/datasets, /sources, /courses/NAME/datasets) with `fields`;
    past `threshold` bytes as a resumable upload sent in `chunk`s. The route's answer."""
    fields = {key: value for key, value in fields.items() if value is not None}
    if payload.size <= threshold:
        with payload.open() as stream:
            return api.post(route, files={"file": (payload.filename, stream.read())}, data=fields)
    upload_id = Resumable(api, payload, kind, fields, chunk).run()
    answer = api.post(route, json={"upload": upload_id, **fields})
    forget(_state_key(api, payload, kind))
    return answer


class Resumable:
    def __init__(self, api: Api, payload: Payload, kind: str, fields: dict[str, str], chunk: int):
        self.api, self.payload, self.kind, self.fields, self.chunk = api, payload, kind, fields, chunk
        self.retries = int(os.environ.get(RETRIES_ENV) or 5)
        self.key = _state_key(api, payload, kind)
        self.progress = Progress(payload.filename, payload.size)

    def run(self) -> str:
        """Send every byte (resuming a remembered upload); the upload's id."""
        location, offset = self._resumed() or (self._create(), 0)
        tries = 0
        with self.payload.open() as stream:
            while offset < self.payload.size:
                stream.seek(offset)
                piece = stream.read(self.chunk)
                try:
                    offset = self._patch(location, offset, piece)
                    tries = 0
                except BROKEN as exc:
                    tries += 1
                    if tries > self.retries:
                        self.progress.end()
                        raise click.ClickException(
                            f"the upload of {self.payload.filename} broke off at {_mb(offset)} of "
                            f"{_mb(self.payload.size)} ({exc.__class__.__name__}); run the same command again "
                            "to resume it"
                        ) from None
                    pause = min(2 ** (tries - 1) * 0.5, 10)
                    self.progress.note(f"connection lost; resuming in {pause:g} s (try {tries} of {self.retries})")
                    time.sleep(pause)
                    offset = self._offset(location, offset)
                self.progress.show(offset)
        self.progress.end()
        return location.rstrip("/").rsplit("/", 1)[1]

    def _resumed(self) -> tuple[str, int] | None:
        entry = _load().get(self.key)
        if not entry:
            return None
        try:
            answer = self.api.session.head(self._url(entry["location"]), headers=TUS, timeout=self.api.timeout)
        except requests.RequestException:
            return None
        if answer.status_code != 200:  # expired or removed: start over
            forget(self.key)
            return None
        offset = int(answer.headers.get("Upload-Offset", 0))
        self.progress.note(f"resuming the upload of {self.payload.filename} at {_mb(offset)}")
        return entry["location"], offset

    def _create(self) -> str:
        meta = {"filename": self.payload.filename, "kind": self.kind, **self.fields}
        headers = {**TUS, "Upload-Length": str(self.payload.size), "Upload-Metadata": _metadata(meta)}
        answer = self.api.request("POST", "/uploads", headers=headers)
        location = answer.headers["Location"]
        _save(self.key, {"location": location, "size": self.payload.size, "created": time.time()})
        return location

    def _patch(self, location: str, offset: int, piece: bytes) -> int:
        headers = {**TUS, "Upload-Offset": str(offset), "Content-Type": OCTETS}
        answer = self.api.session.patch(self._url(location), data=piece, headers=headers, timeout=self.api.timeout)
        if answer.status_code == 409:
            details = _json(answer).get("error", {}).get("details") or {}
            if "offset" in details:  # the server has more (or less) than we thought: go on from its offset
                return int(details["offset"])
            time.sleep(0.5)  # a request cut off earlier is still finishing its write there
            return self._offset(location, offset)
        if answer.status_code >= 400:
            if answer.status_code == 404:
                forget(self.key)
            raise _error(answer)
        return int(answer.headers["Upload-Offset"])

    def _offset(self, location: str, fallback: int) -> int:
        try:
            answer = self.api.session.head(self._url(location), headers=TUS, timeout=self.api.timeout)
        except BROKEN:
            return fallback  # still down: the next PATCH finds out, and counts as a try
        if answer.status_code != 200:
            forget(self.key)
            raise _error(answer)
        return int(answer.headers["Upload-Offset"])

    def _url(self, location: str) -> str:
        return location if "://" in location else f"{self.api.base}{location}"


class Progress:
    """`uploading data.npz: 45% (90 of 200 MB)` on stderr: redrawn in place on a terminal,
    a line every tenth otherwise (a log stays short)."""

    def __init__(self, name: str, size: int):
        self.name, self.size, self.shown, self.started = name, size, -1, time.monotonic()
        self.tty = sys.stderr.isatty()

    def show(self, offset: int) -> None:
        percent = int(offset * 100 / self.size) if self.size else 100
        if percent == self.shown or (not self.tty and percent // 10 == self.shown // 10 and percent < 100):
            return
        self.shown = percent
        rate = offset / max(time.monotonic() - self.started, 1e-3)
        line = f"uploading {self.name}: {percent}% ({_mb(offset)} of {_mb(self.size)}, {_mb(int(rate))}/s)"
        click.echo(f"\r{line}\x1b[K" if self.tty else line, err=True, nl=not self.tty)

    def note(self, text: str) -> None:
        if self.tty and self.shown >= 0:
            click.echo(err=True)
        click.echo(text, err=True)

    def end(self) -> None:
        if self.tty and self.shown >= 0:
            click.echo(err=True)
            self.shown = -1


def state_path() -> Path:
    return config_path().with_name("uploads.json")


def forget(key: str) -> None:
    state = _load()
    if state.pop(key, None) is not None:
        _write(state)


def _state_key(api: Api, payload: Payload, kind: str) -> str:
    return f"{api.base}|{kind}|{payload.key}"


def _load() -> dict[str, Any]:
    try:
        state = json.loads(state_path().read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _save(key: str, entry: dict[str, Any]) -> None:
    state = _load()
    state[key] = entry
    _write(state)


def _write(state: dict[str, Any]) -> None:
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".uploads.json.{os.getpid()}")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(state, handle)
    os.replace(tmp, path)


def _metadata(meta: dict[str, str]) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in meta.items())


def _mb(size: int) -> str:
    return f"{size / MIB:.1f} MB"


def human_size(size: int) -> str:
    """1.5 GB, 230 MB, 12 KB, as the server's messages write sizes."""
    for unit, scale in (("GB", 1024**3), ("MB", MIB), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"
