"""Resolving the data set a job spec names, as one user may see it: a built-in, an upload of
theirs, or a course's data set (`{"course", "name"}`: any member of the course reads it).
Another user's upload, or a data set of a course one is not in, is the same 404 as an unknown
one, so ids and names leak nothing.

The views say what the spec checks need to know of a data set (rows, columns, shapes), so
that a spec that cannot run on its data is a 422 at submit time, not a failed job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.core.errors import NotFound, SpecError, spec_error_from
from service.core.orm import Course, CourseMember, Dataset, User, could_be_id
from service.core.schema import Strict
from service.data.arrays import IMAGE_BUILTINS, builtin_array_info
from service.data.image_folders import CHANNELS, IMAGE_FOLDER, image_input
from service.data.tables import BUILTINS, DataError, builtin_info, infer_task
from service.data.tasks import CLASSIFICATION, REGRESSION


class DatasetRef(Strict):
    """An uploaded data set by `id`, or a course's by `course` and `name`. A stored spec names a
    course's data set by both (the worker reads the file by id); the id must then be that one."""

    id: str | None = Field(None, min_length=1, max_length=64, description="An uploaded data set's id")
    course: str | None = Field(None, min_length=1, max_length=64, description="The course that published it")
    name: str | None = Field(None, min_length=1, max_length=255, description="Its name in that course")
    target: str | None = Field(None, min_length=1, max_length=255)


@dataclass
class DatasetView:
    """A table (built-in or uploaded CSV), as the spec checks see it."""

    spec_value: Any  # what the stored spec names: "iris" or {"id", "target"}
    rows: int
    columns: list[dict[str, Any]]
    target: str | None
    task: str | None  # the built-in's task, or None to infer from the target


@dataclass
class ArrayView:
    """What the checks need to know of a network's data set."""

    spec_value: Any
    input_shape: tuple[int, ...]
    task: str
    n_outputs: int
    rows: int
    image: dict[str, Any] | None = None  # an image folder's pictures: the size and colour they are resized to


def target_column(view: DatasetView) -> dict[str, Any] | None:
    return next((c for c in view.columns if c["name"] == view.target), None)


def supervised_task(view: DatasetView, task: str | None = None) -> str:
    """The task a supervised job does on this table: `task`, or what its target column holds."""
    target = target_column(view)
    if target is None:
        raise SpecError("supervised learning needs a target column; name it in dataset.target", field="dataset.target")
    natural = view.task or infer_task(target)
    task = task or natural
    if view.task and task != view.task:
        raise SpecError(
            f"{view.spec_value} is a {view.task} data set, but this algorithm does {task}; "
            f"choose an algorithm that does {view.task}",
            field="task",
        )
    if task == REGRESSION and target["kind"] != "numeric":
        raise SpecError(f"regression needs a numeric target; column {target['name']!r} holds text", field="task")
    return task


class DatasetRefs:
    """Resolves the data set a spec names: a built-in, or an upload `user` may see."""

    def __init__(self, session: Session, user: User, data_dir: Path):
        self.session, self.user, self.data_dir = session, user, data_dir

    def table(self, ref: Any) -> DatasetView:
        """The table a spec names; a 422 that says what to name instead, or a 404 for an id not yours."""
        if isinstance(ref, str):
            if ref not in BUILTINS:
                raise SpecError(
                    f"unknown data set {ref!r}; use a built-in ({', '.join(BUILTINS)}) or "
                    '{"id": <uploaded data set id>, "target": <column>}',
                    field="dataset",
                    code="unknown_dataset",
                )
            info = builtin_info(ref)
            return DatasetView(
                spec_value=ref, rows=info["rows"], columns=info["columns"], target="target", task=info["task"]
            )
        if not isinstance(ref, dict):
            raise SpecError('dataset must be a built-in name or {"id": ..., "target": ...}', field="dataset")
        parsed = _parse_ref(ref)
        row = self.named(parsed)
        if row.kind != "csv":
            raise SpecError("classic algorithms need a CSV data set", field="dataset.id")
        columns = row.info["columns"]
        target = parsed.target or row.info.get("target")
        if target is not None and target not in {c["name"] for c in columns}:
            raise SpecError(
                f"the data set has no column {target!r}; its columns are {', '.join(c['name'] for c in columns)}",
                field="dataset.target",
            )
        return DatasetView(
            spec_value=self._stored(row) | {"target": target},
            rows=row.rows,
            columns=columns,
            target=target,
            task=None,
        )

    def arrays(self, ref: Any, image: dict[str, Any] | None = None) -> ArrayView:
        """The data set a network job names: images (mnist, digits, NPZ, an image folder resized as
        `image` asks) or a table of numbers."""
        parsed = _parse_ref(ref) if isinstance(ref, dict) else None
        row = self.named(parsed) if parsed is not None else None
        if row is not None and row.kind == IMAGE_FOLDER:
            plan = image_input(row.info, image)
            shape = (*plan["size"], CHANNELS[plan["color"]])
            return ArrayView(self._stored(row), shape, CLASSIFICATION, len(row.info["classes"]), row.rows, plan)
        if image is not None:
            raise SpecError(
                "image (the size and colour pictures are resized to) applies to image-folder data sets only",
                field="image",
            )
        if isinstance(ref, str) and ref in IMAGE_BUILTINS:
            try:
                info = builtin_array_info(ref, self.data_dir)
            except DataError as exc:
                raise SpecError(str(exc), field="dataset", code="unknown_dataset") from None
            return ArrayView(ref, tuple(info["input_shape"]), info["task"], len(info["classes"]), info["rows"])
        if row is not None and row.kind == "npz":
            info = row.info
            outputs = len(info["classes"]) if info["classes"] is not None else 1
            return ArrayView(self._stored(row), tuple(info["input_shape"]), info["task"], outputs, row.rows)
        view = self.table(ref)  # a table: a built-in or an uploaded CSV
        task = supervised_task(view)
        features = [c for c in view.columns if c["name"] != view.target]
        text = [c["name"] for c in features if c["kind"] != "numeric"]
        if text:
            raise SpecError(f"networks take numeric features; columns {', '.join(text[:5])} hold text", field="dataset")
        target = target_column(view)
        gaps = [c["name"] for c in features if c["missing"]] + ([view.target] if target["missing"] else [])
        if gaps:
            raise SpecError(
                f"networks need complete rows; columns {', '.join(gaps[:5])} have missing values", field="dataset"
            )
        outputs = target["distinct"] if task == CLASSIFICATION else 1
        return ArrayView(view.spec_value, (len(features),), task, outputs, view.rows)

    def reference(self, ref: dict) -> dict[str, str]:
        """What a stored spec keeps of a data set a job only mounts (a code job): its id, and a
        course's data set's course and name besides."""
        parsed = _parse_ref(ref)
        return self._stored(self.named(parsed))

    def named(self, ref: DatasetRef) -> Dataset:
        """The data set a parsed ref names: by id (the user's own, or a course's they are in), or
        by course and name (a course the user is a member of; an admin: any)."""
        if ref.course is None:
            return self.uploaded(ref.id)
        row = published_dataset(self.session, ref.course, ref.name)
        if row is None or (ref.id is not None and ref.id != row.id) or not self._in_course(row.course_id):
            raise NotFound(f"no data set named {ref.name!r} in a course named {ref.course!r}", field="dataset.name")
        return row

    def _stored(self, row: Dataset) -> dict[str, str]:
        """The id the worker reads the file by; a course's data set also by its course and name,
        for people reading the spec."""
        course = self.session.get(Course, row.course_id) if row.course_id else None
        return {"id": row.id} if course is None else {"course": course.name, "name": row.name, "id": row.id}

    def _in_course(self, course_id: str) -> bool:
        if self.user.is_admin:
            return True
        member = select(CourseMember.id).where(
            CourseMember.course_id == course_id, CourseMember.user_id == self.user.id
        )
        return self.session.scalar(member.limit(1)) is not None

    def uploaded(self, dataset_id: str) -> Dataset:
        """The user's uploaded data set, or one of their courses'; another user's is the same 404
        as an unknown id."""
        row = self.session.get(Dataset, dataset_id) if could_be_id(dataset_id) else None
        mine = row is not None and (row.owner_id == self.user.id or self.user.is_admin)
        if not mine and (row is None or row.course_id is None or not self._in_course(row.course_id)):
            raise NotFound(f"no data set with id {dataset_id!r}", field="dataset.id")
        return row


def published_dataset(session: Session, course: str, name: str) -> Dataset | None:
    """The data set a course published under `name`, whoever asks (callers check membership)."""
    if not (could_be_id(course) and could_be_id(name)):  # longer than any name, or NUL: none such
        return None
    return session.scalar(
        select(Dataset).join(Course, Course.id == Dataset.course_id).where(Course.name == course, Dataset.name == name)
    )


def _parse_ref(ref: dict) -> DatasetRef:
    try:
        parsed = DatasetRef.model_validate(ref)
    except ValidationError as exc:
        raise spec_error_from(exc, DatasetRef, prefix="dataset") from None
    by_course = parsed.course is not None and parsed.name is not None
    if not by_course and (parsed.id is None or parsed.course is not None or parsed.name is not None):
        raise SpecError(
            'dataset must be a built-in name, {"id": <uploaded data set id>} or '
            '{"course": <course name>, "name": <the course\'s data set>}',
            field="dataset",
        )
    return parsed
