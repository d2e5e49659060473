"""Where an upload's bytes come from: a multipart `file`, or a finished resumable upload named
in a JSON body `{"upload": "<id>", "name": ..., "target": ...}` (service/api/uploads.py). The
data set and source routes take either and run the same checks on the bytes; a resumable
upload is consumed (its row deleted with the new row's commit, then its part file) only when
they pass, so a failed check leaves it whole for another try."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, BinaryIO

from flask import g, request
from sqlalchemy.orm import Session

from service.api.auth import current_user, db_session
from service.core import uploads
from service.core.errors import NotFound, SpecError
from service.core.orm import Upload


@dataclass
class Incoming:
    """A multipart file's bytes, or a finished resumable upload read from its file on disk (it
    may be far larger than memory: archives are unpacked from the file as a stream)."""

    filename: str
    size: int
    upload: Upload | None  # the resumable upload it came from
    data: bytes | None = None  # a multipart file's bytes

    def open(self) -> BinaryIO:
        """A new reader of the bytes, from their start."""
        if self.data is not None:
            return io.BytesIO(self.data)
        return open(self.upload.path, "rb")

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        with self.open() as stream:
            return stream.read()


def incoming(kind: str, missing: str) -> Incoming:
    """The request's file for a `kind` (dataset | source); `missing` says how to send one."""
    upload = json_upload(kind)
    if upload is not None:
        uploads.check_finished(upload)
        return Incoming(upload.filename, upload.length, upload)
    upload_file = request.files.get("file")
    if upload_file is None:
        raise SpecError(f'{missing}, or a finished resumable upload as JSON {{"upload": "<id>"}}', field="file")
    data = upload_file.read()
    return Incoming(PurePath(upload_file.filename or "").name, len(data), None, data)


def field(name: str, kind: str) -> str | None:
    """A form field, or the JSON body's (the upload's metadata filling what the body leaves out)."""
    if not request.is_json:
        return request.form.get(name) or None
    value = _json_body().get(name)
    if value is None:
        value = (json_upload(kind).meta or {}).get(name)
    if value is not None and not isinstance(value, str):
        raise SpecError(f"{name} must be a string", field=name)
    return value or None


def json_upload(kind: str) -> Upload | None:
    """The caller's finished upload a JSON body names (None for a multipart request); another
    user's is the unknown id's 404, as is an expired one."""
    if not request.is_json:
        return None
    if "json_upload" in g:
        return g.json_upload
    upload_id = _json_body().get("upload")
    if not isinstance(upload_id, str) or not upload_id:
        raise SpecError('send {"upload": "<id>"} (an upload made with POST /api/v1/uploads)', field="upload")
    session = db_session()
    upload = uploads.find(session, upload_id)
    if upload is None or upload.owner_id != current_user().id:
        raise NotFound(f"no upload with id {upload_id!r}", field="upload")
    if upload.kind != kind:
        raise SpecError(f"upload {upload_id} was made for a {upload.kind}, not a {kind}", field="upload")
    g.json_upload = upload
    return upload


def consume(session: Session, source: Incoming) -> None:
    """Delete the upload's row in the transaction that adds what it became."""
    if source.upload is not None:
        session.delete(source.upload)


def discard(source: Incoming) -> None:
    """After that commit: its part file."""
    if source.upload is not None:
        uploads.discard_file(source.upload.path)


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise SpecError("the body must be a JSON object", field="upload")
    return body
