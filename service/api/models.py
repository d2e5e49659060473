"""Model routes: list, get, download, predict."""
from __future__ import annotations

from flask import Blueprint, Flask, send_file
from sqlalchemy import select

from service.api import services
from service.api.auth import current_user, db_session, owned
from service.api.requests import json_body
from service.api.serialize import model_view
from service.errors import Conflict, NotFound, SpecError
from service.predict import predict_tabular, tabular_frame
from service.storage import load_sklearn
from service.tables import Job, Model

bp = Blueprint("models", __name__, url_prefix="/api/v1/models")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


def _model(model_id: str) -> Model:
    """A model by its id, or by its job's id: a job that has no model yet is a 409 that says why."""
    session = db_session()
    model = session.get(Model, model_id) if len(model_id) <= 64 else None
    if model is None:
        model = session.scalar(select(Model).where(Model.job_id == model_id))
    user = current_user()
    if model is not None and (model.owner_id == user.id or user.is_admin):
        return model
    try:
        job = owned(Job, model_id, "model")
    except NotFound:
        raise NotFound(f"no model with id {model_id!r}", field="id") from None
    raise Conflict(f"job {job.id} is {job.status}, so it has no model to use"
                   + (f" ({job.error})" if job.error else ""), field="status")


@bp.get("")
def list_models():
    user = current_user()
    query = select(Model).order_by(Model.id.desc())
    if not user.is_admin:
        query = query.where(Model.owner_id == user.id)
    return {"items": [model_view(m) for m in db_session().scalars(query)]}


@bp.get("/<model_id>")
def get_model(model_id: str):
    return model_view(_model(model_id))


@bp.get("/<model_id>/download")
def download(model_id: str):
    model = _model(model_id)
    suffix = model.artifact_path.rsplit(".", 1)[-1]
    return send_file(model.artifact_path, as_attachment=True, download_name=f"{model.id}.{suffix}",
                     mimetype="application/octet-stream")


@bp.post("/<model_id>/predict")
def predict(model_id: str):
    model = _model(model_id)
    payload = json_body()
    if not isinstance(payload, dict) or "instances" not in payload:
        raise SpecError("send {\"instances\": [[...], ...]}: one list of feature values per row",
                        field="instances")
    frame = tabular_frame(payload["instances"], model.input["features"], model.input.get("categorical", []))
    pipeline = services().models.get(model.id, model.artifact_path, load_sklearn)
    output = predict_tabular(pipeline, frame, model.task)
    if model.class_names and model.task == "classification":
        output["labels"] = [model.class_names[int(p)] for p in output["predictions"]]
    output["model_id"] = model.id
    return output
