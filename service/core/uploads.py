"""Resumable uploads (the tus 1.0.0 protocol's state; its wire format is service/api/uploads.py).

An upload is a row (`uploads`: its owner, what it becomes, its length and the offset reached)
and a part file under the artifact directory. A row rather than a file beside the part: the
quota sums what uploads under way hold, the sweep finds the expired ones, and ownership is
checked, all with one query each. A chunk is appended after truncating the part to the
recorded offset (bytes past it were never acknowledged), synced to disk, and only then is
the offset advanced; a connection that breaks mid-chunk keeps what arrived, synced, so the
client asks for the offset and sends the rest. One request writes to a part at a time (a
lock on the file). An upload nobody added to for `upload_expiry_h` is removed when it is
next asked for, when a new upload is made, and by `labtrain admin prune`.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import os
from datetime import timedelta
from pathlib import Path, PurePath
from typing import IO

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.core import storage
from service.core.config import Settings
from service.core.errors import Conflict, ServiceError, SpecError
from service.core.orm import Upload, could_be_id, utcnow

KINDS = ("dataset", "source")
CHUNK = 1024 * 1024
MAX_METADATA = 4096  # bytes of Upload-Metadata: a file name and a few fields


class BadHeader(ServiceError):
    status = 400
    code = "bad_request"


def parse_metadata(header: str | None) -> dict[str, str]:
    """Upload-Metadata: `key base64(value)` pairs separated by commas (a key may have no value)."""
    if not header:
        return {}
    if len(header) > MAX_METADATA:
        raise BadHeader(f"Upload-Metadata is longer than {MAX_METADATA} characters", field="Upload-Metadata")
    pairs = {}
    for item in header.split(","):
        key, _, encoded = item.strip().partition(" ")
        if not key or " " in encoded.strip() or key in pairs:
            raise BadHeader(
                f"Upload-Metadata has a malformed pair {item.strip()[:80]!r}; write `key base64value` pairs "
                "separated by commas, each key once",
                field="Upload-Metadata",
            )
        try:
            pairs[key] = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise BadHeader(
                f"Upload-Metadata's {key[:40]!r} is not base64 of UTF-8 text", field="Upload-Metadata"
            ) from None
    return pairs


def create(
    session: Session, settings: Settings, owner_id: str, kind: str, filename: str, meta: dict[str, str], length: int
) -> Upload:
    """A new, empty upload of `length` bytes (the caller checked the size and the quota)."""
    if kind not in KINDS:
        raise SpecError(f"kind must be one of {', '.join(KINDS)}, not {kind[:40]!r}", field="kind")
    sweep_expired(session, settings)
    upload = Upload(
        owner_id=owner_id,
        kind=kind,
        filename=PurePath(filename).name[:255],
        meta=meta,
        length=length,
        received=0,
        expires_at=utcnow() + timedelta(hours=settings.upload_expiry_h),
        path="",
    )
    session.add(upload)
    session.flush()  # its id
    path = storage.upload_path(settings, upload.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(exist_ok=False)
    upload.path = str(path)
    session.commit()
    return upload


def find(session: Session, upload_id: str) -> Upload | None:
    """The upload, or None when there is none (an expired one is removed now)."""
    upload = session.get(Upload, upload_id) if could_be_id(upload_id) else None
    if upload is not None and upload.expires_at <= utcnow():
        remove(session, upload)
        return None
    return upload


def append(session: Session, settings: Settings, upload: Upload, offset: int, body: IO[bytes]) -> int:
    """Write `body` at `offset` (which must be the upload's offset: else a 409) and return the new
    offset. What arrives before an error (a broken connection) is kept and counted."""
    if offset != upload.received:
        raise Conflict(
            f"Upload-Offset {offset} is not this upload's offset {upload.received}; ask with HEAD and send from there",
            field="Upload-Offset",
            details={"offset": upload.received},
        )
    try:
        part = open(upload.path, "r+b")  # noqa: SIM115 (closed below, after the lock)
    except FileNotFoundError:
        remove(session, upload)
        raise Conflict("this upload's bytes are gone; start a new upload", field="id") from None
    with part:
        try:
            fcntl.flock(part, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Conflict(
                "another request is writing to this upload; wait for it, then ask for the offset with HEAD",
                field="Upload-Offset",
            ) from None
        part.truncate(upload.received)  # bytes past the offset were never acknowledged
        part.seek(upload.received)
        room, written = upload.length - upload.received, 0
        try:
            while chunk := body.read(min(CHUNK, room - written + 1)):
                if written + len(chunk) > room:
                    part.truncate(upload.received)
                    written = 0
                    raise SpecError(
                        f"the body goes past the upload's length of {upload.length} bytes (Upload-Length)",
                        field="Upload-Offset",
                        code="too_large",
                        status=413,
                    )
                part.write(chunk)
                written += len(chunk)
        finally:
            part.flush()
            os.fsync(part.fileno())  # on disk before the offset says so
            upload.received += written
            upload.expires_at = utcnow() + timedelta(hours=settings.upload_expiry_h)
            session.commit()
    return upload.received


def check_finished(upload: Upload) -> None:
    """A 409 while some of the upload's bytes are still to come."""
    if upload.received < upload.length:
        raise Conflict(
            f"the upload has {upload.received} of its {upload.length} bytes; send the rest (PATCH) first",
            field="upload",
            details={"offset": upload.received, "length": upload.length},
        )


def remove(session: Session, upload: Upload) -> None:
    """The row deleted (committed), then its part file."""
    path = upload.path
    session.delete(upload)
    session.commit()
    discard_file(path)


def discard_file(path: str) -> None:
    if path:
        Path(path).unlink(missing_ok=True)


def sweep_expired(session: Session, settings: Settings) -> int:
    """Remove every upload past its expiry; how many there were."""
    expired = session.scalars(select(Upload).where(Upload.expires_at <= utcnow())).all()
    paths = [upload.path for upload in expired]
    for upload in expired:
        session.delete(upload)
    session.commit()
    for path in paths:
        discard_file(path)
    return len(expired)
