"""Data set routes: upload, list, get; `store_upload` is the one upload path (a course's data sets
take it too: service/api/course_datasets.py)."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from flask import Blueprint, Flask, request
from sqlalchemy import select

from service.api.auth import current_user, db_session, owned
from service.api.context import services
from service.api.serialize import dataset_view
from service.core import storage
from service.core.config import Settings
from service.core.errors import SpecError
from service.core.orm import Dataset, new_id
from service.data.arrays import IMAGE_BUILTINS, builtin_array_info, check_arrays, is_npz, read_npz
from service.data.image_folders import IMAGE_FOLDER, FolderLimits, unpack_image_folder
from service.data.tables import BUILTINS, DataError, builtin_info, describe_frame, read_csv_bytes

bp = Blueprint("datasets", __name__, url_prefix="/api/v1/datasets")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.post("")
def upload():
    dataset = store_upload(request.form.get("name"))
    return dataset_view(dataset), 201, {"Location": f"/api/v1/datasets/{dataset.id}"}


def store_upload(name: str | None, course_id: str | None = None) -> Dataset:
    """The request's multipart `file` (a CSV, an NPZ or a zip of class folders) checked, stored
    and its row committed, owned by the caller; `course_id` publishes it to that course."""
    upload_file = request.files.get("file")
    if upload_file is None:
        raise SpecError("send the data as a multipart form field named 'file'", field="file")
    filename = PurePath(upload_file.filename or "upload.csv").name
    suffix = PurePath(filename).suffix.lower()
    if suffix not in ("", ".csv", ".txt", ".npz", ".zip"):
        raise SpecError(
            f"{suffix} files are not accepted; upload a CSV file with a header row, an NPZ file with arrays "
            "x and y, or a .zip of image folders (class_name/image.png)",
            field="file",
            code="invalid_dataset",
        )
    data = upload_file.read()
    settings = services().settings
    if len(data) > settings.max_upload_bytes:
        raise SpecError(
            f"the file is larger than the limit of {settings.max_upload_bytes} bytes",
            field="file",
            code="too_large",
            status=413,
        )
    kind = _kind(suffix, data)
    dataset_id = new_id()
    if kind == IMAGE_FOLDER:
        path = storage.dataset_dir(settings, dataset_id)
        info = unpack_image_folder(data, path, _folder_limits(settings))
        size = info["bytes"]
    else:
        try:
            info = _inspect_npz(data) if kind == "npz" else _inspect_csv(data)
        except DataError as exc:
            raise SpecError(str(exc), field=exc.field, code="invalid_dataset") from None
        path, size = storage.dataset_path(settings, dataset_id, kind), len(data)
        storage.write_atomically(path, data)
    session = db_session()
    dataset = Dataset(
        id=dataset_id,
        owner_id=current_user().id,
        name=name or filename,
        kind=kind,
        path=str(path),
        size_bytes=size,
        rows=info["rows"],
        info=info,
        course_id=course_id,
    )
    session.add(dataset)
    session.commit()
    return dataset


def _kind(suffix: str, data: bytes) -> str:
    if suffix == ".zip":
        return IMAGE_FOLDER
    if suffix == ".npz":
        return "npz"
    if data[:4] == b"PK\x03\x04":  # a zip under another name: an NPZ holds nothing but .npy arrays
        return "npz" if is_npz(data) else IMAGE_FOLDER
    return "csv"


def _folder_limits(settings: Settings) -> FolderLimits:
    return FolderLimits(settings.max_dataset_images, settings.max_dataset_bytes, settings.max_image_pixels)


def _inspect_csv(data: bytes) -> dict[str, Any]:
    frame = read_csv_bytes(data)
    info = describe_frame(frame)
    target = request.form.get("target") or None
    if target is not None and target not in frame.columns:
        raise DataError(f"the CSV has no column {target!r}; its columns are {', '.join(frame.columns)}", field="target")
    info["target"] = target
    return info


def _inspect_npz(data: bytes) -> dict[str, Any]:
    return check_arrays(read_npz(data))


@bp.get("")
def list_datasets():
    user = current_user()
    query = select(Dataset).order_by(Dataset.id.desc())
    if not user.is_admin:
        query = query.where(Dataset.owner_id == user.id)
    builtins = [_builtin_view(name) for name in BUILTINS] + _image_builtins()
    return {"items": builtins + [dataset_view(d) for d in db_session().scalars(query)]}


@bp.get("/<dataset_id>")
def get_dataset(dataset_id: str):
    if dataset_id in BUILTINS:
        return _builtin_view(dataset_id)
    return dataset_view(owned(Dataset, dataset_id, "data set"))


def _image_builtins() -> list[dict[str, Any]]:
    views = []
    for name in IMAGE_BUILTINS:
        try:
            info = builtin_array_info(name, services().settings.data_dir)
        except DataError:
            continue  # mnist is listed once its file is installed
        views.append(
            {
                "id": name,
                "name": name,
                "builtin": True,
                "kind": "images",
                "task": info["task"],
                "rows": info["rows"],
                "shape": info["input_shape"],
                "classes": info["classes"],
            }
        )
    return views


def _builtin_view(name: str) -> dict[str, Any]:
    info = builtin_info(name)
    return {
        "id": name,
        "name": name,
        "builtin": True,
        "kind": "table",
        "task": info["task"],
        "rows": info["rows"],
        "columns": info["columns"],
        "target": "target",
        "classes": info["classes"],
    }
