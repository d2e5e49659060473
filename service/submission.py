"""Checking a submitted job spec for one user: the data sets it names are resolved as that
user may see them. The API does this on submit; the search driver does it for each trial."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from service.arrays import IMAGE_BUILTINS, builtin_array_info
from service.datasets import BUILTINS, DataError, builtin_info
from service.errors import NotFound, SpecError, spec_error_from
from service.network_specs import ArrayView
from service.specs import DatasetRef, DatasetView, ValidatedJob, resolve_table_task, validate_job
from service.tables import Dataset, User
from service.worker_registry import gpu_worker_online


def could_be_id(object_id: str) -> bool:
    """False for strings no id can be; PostgreSQL would refuse NUL bytes with an error, not a miss."""
    return len(object_id) <= 64 and "\x00" not in object_id


def validate_submission(session: Session, user: User, data_dir: Path, payload: Any) -> ValidatedJob:
    refs = DatasetRefs(session, user, data_dir)
    return validate_job(payload, refs.table, refs.arrays, lambda: gpu_worker_online(session))


class DatasetRefs:
    """Resolves the data set a spec names: a built-in, or an upload `user` may see."""

    def __init__(self, session: Session, user: User, data_dir: Path):
        self.session, self.user, self.data_dir = session, user, data_dir

    def table(self, ref: Any) -> DatasetView:
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
        row = self._uploaded(parsed.id)
        if row.kind != "csv":
            raise SpecError("classic algorithms need a CSV data set", field="dataset.id")
        columns = row.info["columns"]
        target = parsed.target or row.info.get("target")
        if target is not None and target not in {c["name"] for c in columns}:
            raise SpecError(f"the data set has no column {target!r}; its columns are "
                            f"{', '.join(c['name'] for c in columns)}", field="dataset.target")
        return DatasetView(spec_value={"id": row.id, "target": target}, rows=row.rows, columns=columns,
                           target=target, task=None)

    def arrays(self, ref: Any) -> ArrayView:
        """The data set a network job names: images (mnist, digits, NPZ) or a table of numbers."""
        if isinstance(ref, str) and ref in IMAGE_BUILTINS:
            try:
                info = builtin_array_info(ref, self.data_dir)
            except DataError as exc:
                raise SpecError(str(exc), field="dataset", code="unknown_dataset") from None
            return ArrayView(ref, tuple(info["input_shape"]), info["task"], len(info["classes"]), info["rows"])
        if isinstance(ref, dict):
            row = self._uploaded(_parse_ref(ref).id)
            if row.kind == "npz":
                info = row.info
                outputs = len(info["classes"]) if info["classes"] is not None else 1
                return ArrayView({"id": row.id}, tuple(info["input_shape"]), info["task"], outputs, row.rows)
        view = self.table(ref)  # a table: a built-in or an uploaded CSV
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

    def _uploaded(self, dataset_id: str) -> Dataset:
        """The user's uploaded data set; another user's is the same 404 as an unknown id, so ids leak nothing."""
        row = self.session.get(Dataset, dataset_id) if could_be_id(dataset_id) else None
        if row is None or (row.owner_id != self.user.id and not self.user.is_admin):
            raise NotFound(f"no data set with id {dataset_id!r}", field="dataset.id")
        return row


def _parse_ref(ref: dict) -> DatasetRef:
    try:
        return DatasetRef.model_validate(ref)
    except ValidationError as exc:
        raise spec_error_from(exc, DatasetRef, prefix="dataset") from None


def _target_missing(view: DatasetView) -> bool:
    return any(c["name"] == view.target and c["missing"] for c in view.columns)
