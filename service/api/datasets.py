"""Data set routes (upload, list, get) and resolving the data set a job spec names."""
from __future__ import annotations

from pathlib import PurePath
from typing import Any

from flask import Blueprint, Flask, request
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from service import storage
from service.api import services
from service.api.auth import could_be_id, current_user, db_session, owned
from service.api.serialize import dataset_view
from service.datasets import BUILTINS, DataError, builtin_info, describe_frame, read_csv_bytes
from service.errors import NotFound, SpecError, spec_error_from
from service.arrays import IMAGE_BUILTINS, builtin_array_info, check_arrays, read_npz
from service.network_specs import ArrayView
from service.specs import DatasetRef, DatasetView, resolve_table_task
from service.tables import Dataset, new_id

bp = Blueprint("datasets", __name__, url_prefix="/api/v1/datasets")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


def resolve_dataset(session: Session, ref: Any) -> DatasetView:
    """The data set a classic job names; a 422 that says what to name instead, or a 404 for an id not yours."""
    if isinstance(ref, str):
        if ref not in BUILTINS:
            raise SpecError(f"unknown data set {ref!r}; use a built-in ({', '.join(BUILTINS)}) or "
                            "{\"id\": <uploaded data set id>, \"target\": <column>}", field="dataset",
                            code="unknown_dataset")
        info = builtin_info(ref)
        return DatasetView(spec_value=ref, rows=info["rows"], columns=info["columns"], target="target",
                           task=info["task"])
    if not isinstance(ref, dict):
        raise SpecError("dataset must be a built-in name or {\"id\": ..., \"target\": ...}", field="dataset")
    parsed = _parse_ref(ref)
    row = _uploaded(session, parsed.id)
    if row.kind != "csv":
        raise SpecError("classic algorithms need a CSV data set", field="dataset.id")
    columns = row.info["columns"]
    target = parsed.target or row.info.get("target")
    if target is not None and target not in {c["name"] for c in columns}:
        raise SpecError(f"the data set has no column {target!r}; its columns are "
                        f"{', '.join(c['name'] for c in columns)}", field="dataset.target")
    return DatasetView(spec_value={"id": row.id, "target": target}, rows=row.rows, columns=columns,
                       target=target, task=None)


def resolve_arrays(session: Session, ref: Any) -> ArrayView:
    """The data set a network job names: images (mnist, digits, NPZ) or a table of numbers."""
    if isinstance(ref, str) and ref in IMAGE_BUILTINS:
        try:
            info = builtin_array_info(ref, services().settings.data_dir)
        except DataError as exc:
            raise SpecError(str(exc), field="dataset", code="unknown_dataset") from None
        return ArrayView(ref, tuple(info["input_shape"]), info["task"], len(info["classes"]), info["rows"])
    if isinstance(ref, dict):
        row = _uploaded(session, _parse_ref(ref).id)
        if row.kind == "npz":
            info = row.info
            outputs = len(info["classes"]) if info["classes"] is not None else 1
            return ArrayView({"id": row.id}, tuple(info["input_shape"]), info["task"], outputs, row.rows)
    view = resolve_dataset(session, ref)  # a table: a built-in or an uploaded CSV
    task = resolve_table_task(view)
    features = [c for c in view.columns if c["name"] != view.target]
    text = [c["name"] for c in features if c["kind"] != "numeric"]
    if text:
        raise SpecError(f"networks take numeric features; columns {', '.join(text[:5])} hold text",
                        field="dataset")
    gaps = [c["name"] for c in features if c["missing"]] + ([view.target] if _target_missing(view) else [])
    if gaps:
        raise SpecError(f"networks need complete rows; columns {', '.join(gaps[:5])} have missing values",
                        field="dataset")
    target = next(c for c in view.columns if c["name"] == view.target)
    outputs = target["distinct"] if task == "classification" else 1
    return ArrayView(view.spec_value, (len(features),), task, outputs, view.rows)


def _parse_ref(ref: dict) -> DatasetRef:
    try:
        return DatasetRef.model_validate(ref)
    except ValidationError as exc:
        raise spec_error_from(exc, DatasetRef, prefix="dataset") from None


def _uploaded(session: Session, dataset_id: str) -> Dataset:
    """The caller's uploaded data set; another user's is the same 404 as an unknown id, so ids leak nothing."""
    row = session.get(Dataset, dataset_id) if could_be_id(dataset_id) else None
    user = current_user()
    if row is None or (row.owner_id != user.id and not user.is_admin):
        raise NotFound(f"no data set with id {dataset_id!r}", field="dataset.id")
    return row


def _target_missing(view: DatasetView) -> bool:
    return any(c["name"] == view.target and c["missing"] for c in view.columns)


@bp.post("")
def upload():
    upload_file = request.files.get("file")
    if upload_file is None:
        raise SpecError("send the data as a multipart form field named 'file'", field="file")
    filename = PurePath(upload_file.filename or "upload.csv").name
    suffix = PurePath(filename).suffix.lower()
    if suffix not in ("", ".csv", ".txt", ".npz"):
        raise SpecError(f"{suffix} files are not accepted; upload a CSV file with a header row or an NPZ "
                        "file with arrays x and y", field="file", code="invalid_dataset")
    data = upload_file.read()
    limit = services().settings.max_upload_bytes
    if len(data) > limit:
        raise SpecError(f"the file is larger than the limit of {limit} bytes", field="file", code="too_large",
                        status=413)
    kind = "npz" if suffix == ".npz" or data[:4] == b"PK\x03\x04" else "csv"
    try:
        info = _inspect_npz(data) if kind == "npz" else _inspect_csv(data)
    except DataError as exc:
        raise SpecError(str(exc), field=exc.field, code="invalid_dataset") from None

    dataset_id = new_id()
    path = storage.dataset_path(services().settings, dataset_id, kind)
    storage.write_atomically(path, data)
    session = db_session()
    dataset = Dataset(id=dataset_id, owner_id=current_user().id, name=request.form.get("name") or filename,
                      kind=kind, path=str(path), size_bytes=len(data), rows=info["rows"], info=info)
    session.add(dataset)
    session.commit()
    return dataset_view(dataset), 201, {"Location": f"/api/v1/datasets/{dataset_id}"}


def _inspect_csv(data: bytes) -> dict[str, Any]:
    frame = read_csv_bytes(data)
    info = describe_frame(frame)
    target = request.form.get("target") or None
    if target is not None and target not in frame.columns:
        raise DataError(f"the CSV has no column {target!r}; its columns are {', '.join(frame.columns)}",
                        field="target")
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
        views.append({"id": name, "name": name, "builtin": True, "kind": "images", "task": info["task"],
                      "rows": info["rows"], "shape": info["input_shape"], "classes": info["classes"]})
    return views


def _builtin_view(name: str) -> dict[str, Any]:
    info = builtin_info(name)
    return {"id": name, "name": name, "builtin": True, "kind": "table", "task": info["task"],
            "rows": info["rows"], "columns": info["columns"], "target": "target", "classes": info["classes"]}
