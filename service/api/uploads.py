"""Resumable uploads: the tus 1.0.0 wire format (core, creation, termination, expiration) at
/api/v1/uploads; the state behind it is service/core/uploads.py. A finished upload becomes a
data set or a source through their own routes (service/api/upload_body.py), with every check
a multipart upload gets. docs/uploads.md describes the exchange.

Every request but OPTIONS says `Tus-Resumable: 1.0.0` (else a 412 naming the version this
server speaks), every response says it too. An upload is its owner's (and an admin's): anyone
else's is the unknown id's 404. Its length is bounded by the largest upload and by the
owner's storage quota, both checked when it is created (413s)."""

from __future__ import annotations

import base64
from datetime import UTC
from email.utils import format_datetime

from flask import Blueprint, Flask, Response, request

from service.api.auth import current_user, db_session, owned
from service.api.context import services
from service.api.datasets import DATASET, dataset_suffix
from service.code.sources import kind_of
from service.core import uploads
from service.core.errors import NotFound, ServiceError, SpecError
from service.core.orm import Upload
from service.jobs import quota

bp = Blueprint("uploads", __name__, url_prefix="/api/v1/uploads")

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,termination,expiration"
OCTETS = "application/offset+octet-stream"


class UnsupportedVersion(ServiceError):
    status = 412
    code = "unsupported_version"


class WrongContentType(ServiceError):
    status = 415
    code = "unsupported_media_type"


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.before_request
def _check_version() -> None:
    if request.method != "OPTIONS" and request.headers.get("Tus-Resumable") != TUS_VERSION:
        raise UnsupportedVersion(
            f"send the header Tus-Resumable: {TUS_VERSION} (the tus protocol version this server speaks)",
            field="Tus-Resumable",
        )


@bp.after_request
def _tus_headers(response: Response) -> Response:
    response.headers["Tus-Resumable"] = TUS_VERSION
    if response.status_code == 412:
        response.headers["Tus-Version"] = TUS_VERSION
    return response


@bp.route("", methods=["OPTIONS"])
def options():
    """What this server speaks: the version, extensions and the largest upload."""
    return (
        "",
        204,
        {
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": EXTENSIONS,
            "Tus-Max-Size": str(services().settings.max_resumable_upload_bytes),
        },
    )


@bp.post("")
def create():
    settings, session, user = services().settings, db_session(), current_user()
    if "Upload-Defer-Length" in request.headers:
        raise uploads.BadHeader(
            "Upload-Defer-Length is not supported; send Upload-Length, the file's size", field="Upload-Defer-Length"
        )
    length = _non_negative("Upload-Length")
    if length is None:
        raise uploads.BadHeader("send Upload-Length, the file's size in bytes", field="Upload-Length")
    meta = uploads.parse_metadata(request.headers.get("Upload-Metadata"))
    filename, kind = meta.get("filename"), meta.get("kind", DATASET)
    if not filename:
        raise SpecError("Upload-Metadata must carry the file's name as `filename`", field="Upload-Metadata")
    if kind not in uploads.KINDS:
        raise SpecError(
            f"Upload-Metadata's kind must be one of {', '.join(uploads.KINDS)}, not {kind[:40]!r}",
            field="Upload-Metadata",
        )
    if kind == DATASET:  # a file no route would take is refused now, not after its bytes came
        dataset_suffix(filename)
    else:
        kind_of(filename)
    if length > settings.max_resumable_upload_bytes:
        raise SpecError(
            f"the file is larger than the limit of {settings.max_resumable_upload_bytes} bytes (Tus-Max-Size)",
            field="Upload-Length",
            code="too_large",
            status=413,
        )
    quota.check_room(session, settings, user, length)
    upload = uploads.create(session, settings, user.id, kind, filename, meta, length)
    location = f"/api/v1/uploads/{upload.id}"
    body = {"id": upload.id, "kind": upload.kind, "filename": upload.filename, "length": length, "offset": 0}
    return body, 201, {"Location": location, "Upload-Expires": _expires(upload)}


@bp.route("/<upload_id>", methods=["HEAD"])
def head(upload_id: str):
    upload = _upload(upload_id)
    headers = {
        "Upload-Offset": str(upload.received),
        "Upload-Length": str(upload.length),
        "Upload-Expires": _expires(upload),
        "Cache-Control": "no-store",
    }
    if upload.meta:
        headers["Upload-Metadata"] = _metadata(upload.meta)
    return "", 200, headers


@bp.patch("/<upload_id>")
def patch(upload_id: str):
    upload = _upload(upload_id)
    if request.mimetype != OCTETS:
        raise WrongContentType(f"send the bytes with Content-Type: {OCTETS}", field="Content-Type")
    offset = _non_negative("Upload-Offset")
    if offset is None:
        raise uploads.BadHeader("send Upload-Offset, where these bytes start (HEAD says)", field="Upload-Offset")
    if request.content_length is not None and offset + request.content_length > upload.length:
        raise SpecError(
            f"the body goes past the upload's length of {upload.length} bytes (Upload-Length)",
            field="Upload-Offset",
            code="too_large",
            status=413,
        )
    reached = uploads.append(db_session(), services().settings, upload, offset, request.stream)
    return "", 204, {"Upload-Offset": str(reached), "Upload-Expires": _expires(upload)}


@bp.delete("/<upload_id>")
def delete(upload_id: str):
    uploads.remove(db_session(), _upload(upload_id))
    return "", 204


def _upload(upload_id: str) -> Upload:
    """The caller's (or, for an admin, anyone's) upload; else, or once expired, the unknown id's 404."""
    upload = owned(Upload, upload_id, "upload")
    if uploads.find(db_session(), upload.id) is None:
        raise NotFound(f"no upload with id {upload_id!r}", field="id")
    return upload


def _non_negative(header: str) -> int | None:
    raw = request.headers.get(header)
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 19:
        raise uploads.BadHeader(f"{header} must be a whole number of bytes, not {raw[:40]!r}", field=header)
    return int(raw)


def _expires(upload: Upload) -> str:
    return format_datetime(upload.expires_at.astimezone(UTC), usegmt=True)  # an HTTP date


def _metadata(meta: dict[str, str]) -> str:
    return ",".join(f"{key} {base64.b64encode(str(value).encode()).decode()}" for key, value in meta.items())
