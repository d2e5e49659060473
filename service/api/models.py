"""Model routes: list, get, download, predict."""
from __future__ import annotations

import numpy as np
from flask import Blueprint, Flask, request, send_file
from sqlalchemy import select

from service.api import services
from service.api.auth import current_user, db_session, owned
from service.submission import could_be_id
from service.api.requests import json_body
from service.api.serialize import model_view
from service.errors import Conflict, NotFound, SpecError
from service.images import ImageError, mnist_digit, to_input
from service.nets.artifacts import load_network
from service.predict import array_batch, network_output, predict_tabular, tabular_frame
from service.storage import load_sklearn
from service.tables import Job, Model

bp = Blueprint("models", __name__, url_prefix="/api/v1/models")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


def _model(model_id: str) -> Model:
    """A model by its id, or by its job's id (a search's: its best trial's); a job that has no model
    yet is a 409 that says why."""
    session = db_session()
    model = None
    if could_be_id(model_id):
        model = session.get(Model, model_id) or session.scalar(select(Model).where(Model.job_id == model_id))
    user = current_user()
    if model is not None and (model.owner_id == user.id or user.is_admin):
        return model
    try:
        job = owned(Job, model_id, "model")
    except NotFound:
        raise NotFound(f"no model with id {model_id!r}", field="id") from None
    best = (job.result or {}).get("model_id") if job.family == "search" else None
    if best:  # a search's model is its best trial's
        return session.get(Model, best)
    if job.family == "optimize":
        raise Conflict(f"job {job.id} is an optimisation job: its result holds the best point it found, "
                       "and it makes no model", field="id")
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
    services().rate_limits.hit("predict", current_user().id)
    model = _model(model_id)
    images = request.files.getlist("file") if request.files else None
    if model.framework == "sklearn":
        if images is not None or request.mimetype == "multipart/form-data":
            raise SpecError("this model takes rows of features as JSON {\"instances\": [[...]]}, not image files",
                            field="file")
        frame = tabular_frame(_instances(), model.input["features"], model.input.get("categorical", []))
        pipeline = services().models.get(model.id, model.artifact_path, load_sklearn)
        output = predict_tabular(pipeline, frame, model.task)
        if model.class_names and model.task == "classification":
            output["labels"] = [model.class_names[int(p)] for p in output["predictions"]]
    else:
        batch = _image_batch(images, model.input) if request.mimetype == "multipart/form-data" \
            else array_batch(_instances(), model.input["shape"])
        run = services().models.get(model.id, model.artifact_path,
                                    lambda path: load_network(model.framework, path, model.meta, model.input["shape"]))
        output = network_output(run(batch), model.task, model.classes, model.meta["outputs_probabilities"])
    output["model_id"] = model.id
    return output


def _instances():
    payload = json_body()
    if not isinstance(payload, dict) or "instances" not in payload:
        raise SpecError("send {\"instances\": [...]}: one input per entry", field="instances")
    return payload["instances"]


def _image_batch(files, model_input: dict) -> np.ndarray:
    """Uploaded digit images converted the way MNIST was made, sized and scaled for the model."""
    if not files:
        raise SpecError("send one or more images as multipart form fields named 'file'", field="file")
    shape = model_input["shape"]
    if model_input.get("kind") != "image" or shape[-1] != 1:
        raise SpecError(f"this model takes inputs of shape {shape}, not images; send JSON instances", field="file")
    inputs = []
    for index, upload in enumerate(files):
        try:
            digit = mnist_digit(upload.read())
        except ImageError as exc:
            raise SpecError(f"file {index} ({upload.filename or 'unnamed'}): {exc}", field=f"file.{index}",
                            code="invalid_image") from None
        inputs.append(to_input(digit, shape[0], shape[1], model_input.get("pixel_max") or 255.0))
    return np.stack(inputs)[..., None]
