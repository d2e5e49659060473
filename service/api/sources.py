"""Source routes: upload a student's code (a file or a project), list, get."""

from __future__ import annotations

from pathlib import PurePath

from flask import Blueprint, Flask, request
from sqlalchemy import select

from service.api.auth import current_user, db_session, owned
from service.api.context import services
from service.api.serialize import source_view
from service.code.sources import unpack
from service.core import storage
from service.core.errors import SpecError
from service.core.orm import Source, new_id

bp = Blueprint("sources", __name__, url_prefix="/api/v1/sources")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.post("")
def upload():
    upload_file = request.files.get("file")
    if upload_file is None:
        raise SpecError(
            "send the code as a multipart form field named 'file': a .py or .ipynb file, or a project "
            "as .zip or .tar.gz",
            field="file",
        )
    filename = PurePath(upload_file.filename or "").name or "train.py"
    settings = services().settings
    source_id = new_id()
    folder = storage.source_dir(settings, source_id)
    unpacked = unpack(filename, upload_file.read(), folder, settings.max_source_files, settings.max_source_bytes)
    session = db_session()
    source = Source(
        id=source_id,
        owner_id=current_user().id,
        name=request.form.get("name") or filename,
        kind=unpacked.kind,
        size_bytes=unpacked.size,
        files=unpacked.files,
        path=str(folder),
    )
    session.add(source)
    session.commit()
    return source_view(source), 201, {"Location": f"/api/v1/sources/{source_id}"}


@bp.get("")
def list_sources():
    user = current_user()
    query = select(Source).order_by(Source.id.desc())
    if not user.is_admin:
        query = query.where(Source.owner_id == user.id)
    return {"items": [source_view(s) for s in db_session().scalars(query)]}


@bp.get("/<source_id>")
def get_source(source_id: str):
    return source_view(owned(Source, source_id, "source"))
