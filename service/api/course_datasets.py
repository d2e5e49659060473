"""A course's data sets: its instructors (and admins) publish them, every member lists and
reads them (in specs, as `{"course": ..., "name": ...}`). Uploads take the one upload path
of service/api/datasets.py."""

from __future__ import annotations

from flask import Blueprint, Flask

from service.api.auth import db_session
from service.api.courses import course_to_manage, visible_course
from service.api.datasets import DATASET, store_upload
from service.api.serialize import dataset_view
from service.api.upload_body import field
from service.courses import datasets

bp = Blueprint("course_datasets", __name__, url_prefix="/api/v1/courses")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.post("/<name>/datasets")
def publish(name: str):
    course = course_to_manage(name)
    dataset_name = datasets.check_new_dataset(db_session(), course, field("name", DATASET))
    dataset = store_upload(dataset_name, course_id=course.id)
    return dataset_view(dataset), 201, {"Location": f"/api/v1/datasets/{dataset.id}"}


@bp.get("/<name>/datasets")
def list_datasets(name: str):
    course, _roles = visible_course(name)
    return {"items": [dataset_view(d) for d in datasets.course_datasets(db_session(), course)]}
