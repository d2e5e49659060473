"""Data set routes: upload, list, get; `store_upload` is the one upload path (a course's data sets
take it too: service/api/course_datasets.py), for a multipart file and a finished resumable upload alike."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any, BinaryIO

from flask import Blueprint, Flask
from sqlalchemy import select

from service.api.auth import current_user, db_session, owned, reads_only
from service.api.builtin_datasets import image_builtin_view, image_builtin_views
from service.api.context import services
from service.api.serialize import dataset_view
from service.api.upload_body import consume, discard, field, incoming
from service.core import storage
from service.core.config import Settings
from service.core.errors import SpecError
from service.core.orm import Dataset, new_id
from service.data.arrays import IMAGE_BUILTINS, check_arrays, is_npz, read_npz
from service.data.image_folders import IMAGE_FOLDER, FolderLimits, unpack_image_folder
from service.data.tables import BUILTINS, DataError, builtin_info, describe_frame, read_csv_bytes
from service.jobs import quota

bp = Blueprint("datasets", __name__, url_prefix="/api/v1/datasets")
DATASET = "dataset"  # what a resumable upload for a data set says it is (Upload-Metadata kind)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.post("")
def upload():
    dataset = store_upload(field("name", DATASET))
    return dataset_view(dataset), 201, {"Location": f"/api/v1/datasets/{dataset.id}"}


def store_upload(name: str | None, course_id: str | None = None) -> Dataset:
    """The request's file (a multipart `file`, or a finished resumable upload: upload_body.py)
    checked, stored and its row committed, owned by the caller; `course_id` publishes it."""
    source = incoming(DATASET, "send the data as a multipart form field named 'file'")
    filename = source.filename or "upload.csv"
    suffix = dataset_suffix(filename)
    settings, session, user = services().settings, db_session(), current_user()
    limit = settings.max_resumable_upload_bytes if source.upload else settings.max_upload_bytes
    if source.size > limit:
        raise SpecError(
            f"the file is larger than the limit of {limit} bytes",
            field="file",
            code="too_large",
            status=413,
        )
    quota.check_room(session, settings, user, source.size, except_upload=source.upload.id if source.upload else None)
    with source.open() as stream:
        kind = _kind(suffix, stream)
    dataset_id = new_id()
    if kind == IMAGE_FOLDER:  # unpacked as a stream: a resumable upload may be gigabytes
        path = storage.dataset_dir(settings, dataset_id)
        with source.open() as stream:
            info = unpack_image_folder(stream, path, _folder_limits(settings))
        size = info["bytes"]
    else:  # a table or arrays is checked in memory, as the jobs that read it load it
        data = source.read()
        try:
            info = _inspect_npz(data) if kind == "npz" else _inspect_csv(data)
        except DataError as exc:
            raise SpecError(str(exc), field=exc.field, code="invalid_dataset") from None
        path, size = storage.dataset_path(settings, dataset_id, kind), len(data)
        storage.write_atomically(path, data)
    dataset = Dataset(
        id=dataset_id,
        owner_id=user.id,
        name=name or filename,
        kind=kind,
        path=str(path),
        size_bytes=size,
        rows=info["rows"],
        info=info,
        course_id=course_id,
    )
    session.add(dataset)
    consume(session, source)
    session.commit()
    discard(source)
    return dataset


def dataset_suffix(filename: str) -> str:
    """The file name's suffix, or a 422 when it names no kind of data set labtrain reads."""
    suffix = PurePath(filename).suffix.lower()
    if suffix not in ("", ".csv", ".txt", ".npz", ".zip"):
        raise SpecError(
            f"{suffix} files are not accepted; upload a CSV file with a header row, an NPZ file with arrays "
            "x and y, or a .zip of image folders (class_name/image.png)",
            field="file",
            code="invalid_dataset",
        )
    return suffix


def _kind(suffix: str, stream: BinaryIO) -> str:
    if suffix == ".zip":
        return IMAGE_FOLDER
    if suffix == ".npz":
        return "npz"
    if stream.read(4) == b"PK\x03\x04":  # a zip under another name: an NPZ holds nothing but .npy arrays
        stream.seek(0)
        return "npz" if is_npz(stream) else IMAGE_FOLDER
    return "csv"


def _folder_limits(settings: Settings) -> FolderLimits:
    return FolderLimits(settings.max_dataset_images, settings.max_dataset_bytes, settings.max_image_pixels)


def _inspect_csv(data: bytes) -> dict[str, Any]:
    frame = read_csv_bytes(data)
    info = describe_frame(frame)
    target = field("target", DATASET)
    if target is not None and target not in frame.columns:
        raise DataError(f"the CSV has no column {target!r}; its columns are {', '.join(frame.columns)}", field="target")
    info["target"] = target
    return info


def _inspect_npz(data: bytes) -> dict[str, Any]:
    return check_arrays(read_npz(data))


@bp.get("")
@reads_only
def list_datasets():
    user = current_user()
    query = select(Dataset).order_by(Dataset.id.desc())
    if not user.is_admin:
        query = query.where(Dataset.owner_id == user.id)
    builtins = [_builtin_view(name) for name in BUILTINS] + image_builtin_views()
    return {"items": builtins + [dataset_view(d) for d in db_session().scalars(query)]}


@bp.get("/<dataset_id>")
@reads_only
def get_dataset(dataset_id: str):
    if dataset_id in BUILTINS:
        return _builtin_view(dataset_id)
    if dataset_id in IMAGE_BUILTINS:
        return image_builtin_view(dataset_id)
    return dataset_view(owned(Dataset, dataset_id, "data set"))


def _builtin_view(name: str) -> dict[str, Any]:
    info = builtin_info(name)
    return {
        "id": name,
        "name": name,
        "label": name,
        "builtin": True,
        "installed": True,  # scikit-learn ships it
        "subset": False,
        "how": None,
        "kind": "table",
        "task": info["task"],
        "rows": info["rows"],
        "columns": info["columns"],
        "target": "target",
        "classes": info["classes"],
    }
