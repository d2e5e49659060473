"""Source routes: upload a student's code (a file or a project: a multipart file or a finished
resumable upload, service/api/upload_body.py), list, get."""

from __future__ import annotations

from flask import Blueprint, Flask
from sqlalchemy import select

from service.api.auth import current_user, db_session, owned, reads_only
from service.api.context import services
from service.api.serialize import source_view
from service.api.upload_body import consume, discard, field, incoming
from service.code.sources import kind_of, unpack
from service.core import storage
from service.core.orm import Source, new_id
from service.jobs import quota

bp = Blueprint("sources", __name__, url_prefix="/api/v1/sources")
SOURCE = "source"  # what a resumable upload for code says it is (Upload-Metadata kind)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.post("")
def upload():
    source_file = incoming(
        SOURCE,
        "send the code as a multipart form field named 'file': a .py or .ipynb file, or a project as .zip or .tar.gz",
    )
    filename = source_file.filename or "train.py"
    settings, session, user = services().settings, db_session(), current_user()
    kind_of(filename)  # a file labtrain cannot run is refused before the quota is counted
    except_upload = source_file.upload.id if source_file.upload else None
    quota.check_room(session, settings, user, source_file.size, except_upload=except_upload)
    source_id = new_id()
    folder = storage.source_dir(settings, source_id)
    with source_file.open() as stream:  # unpacked as a stream: a resumable upload may be large
        unpacked = unpack(filename, stream, folder, settings.max_source_files, settings.max_source_bytes)
    source = Source(
        id=source_id,
        owner_id=user.id,
        name=field("name", SOURCE) or filename,
        kind=unpacked.kind,
        size_bytes=unpacked.size,
        files=unpacked.files,
        path=str(folder),
    )
    session.add(source)
    consume(session, source_file)
    session.commit()
    discard(source_file)
    return source_view(source), 201, {"Location": f"/api/v1/sources/{source_id}"}


@bp.get("")
@reads_only
def list_sources():
    user = current_user()
    query = select(Source).order_by(Source.id.desc())
    if not user.is_admin:
        query = query.where(Source.owner_id == user.id)
    return {"items": [source_view(s) for s in db_session().scalars(query)]}


@bp.get("/<source_id>")
@reads_only
def get_source(source_id: str):
    return source_view(owned(Source, source_id, "source"))
