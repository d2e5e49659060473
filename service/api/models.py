"""Model routes: list, get, download, predict. Predict is answered by the predictor the
model's framework has in the job-family registry."""

from __future__ import annotations

from flask import Blueprint, Flask, request, send_file
from sqlalchemy import select

from service.api.auth import current_user, db_session, reads_only, visible_job
from service.api.context import services
from service.api.requests import json_body
from service.api.serialize import model_view
from service.core.errors import Conflict, NotFound, SpecError
from service.core.orm import Model, could_be_id
from service.courses.access import can_see_model, visible_models
from service.jobs import families

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
    if model is not None and can_see_model(session, user, model):
        return model
    try:
        job = visible_job(model_id, "model")
    except NotFound:
        raise NotFound(f"no model with id {model_id!r}", field="id") from None
    named = (job.result or {}).get("model_id")
    if named:  # a search's model is its best trial's
        model = session.get(Model, named)
        if model is not None:
            return model
    unkept = (job.result or {}).get("model_not_kept")  # a search's trial (its keep_models)
    if unkept:
        raise Conflict(f"job {job.id} kept no model: {unkept}", field="id")
    family = families.get(job.family)
    if not family.makes_model:
        raise Conflict(f"job {job.id} is {family.no_model}", field="id")
    raise Conflict(
        f"job {job.id} is {job.status}, so it has no model to use" + (f" ({job.error})" if job.error else ""),
        field="status",
    )


@bp.get("")
@reads_only
def list_models():
    user = current_user()
    query = select(Model).where(visible_models(user.id, user.is_admin)).order_by(Model.id.desc())
    return {"items": [model_view(m) for m in db_session().scalars(query)]}


@bp.get("/<model_id>")
@reads_only
def get_model(model_id: str):
    return model_view(_model(model_id))


@bp.get("/<model_id>/download")
def download(model_id: str):
    model = _model(model_id)
    suffix = model.artifact_path.rsplit(".", 1)[-1]
    return send_file(
        model.artifact_path,
        as_attachment=True,
        download_name=f"{model.id}.{suffix}",
        mimetype="application/octet-stream",
    )


@bp.post("/<model_id>/predict")
def predict(model_id: str):
    services().rate_limits.hit("predict", current_user().id)
    model = _model(model_id)
    predictor = families.predictor(model.framework)
    if predictor is None:
        raise Conflict(f"no predictor serves {model.framework} models on this server", field="id")
    if request.mimetype == "multipart/form-data":
        images = [(upload.filename or "", upload.read()) for upload in request.files.getlist("file")]
        instances = None
    else:
        images, instances = None, _instances()
    # The model answers from a process of its own, never from this one (service/serving).
    output = services().models.predict(model, predictor, instances, images)
    output["model_id"] = model.id
    return output


def _instances():
    payload = json_body()
    if not isinstance(payload, dict) or "instances" not in payload:
        raise SpecError('send {"instances": [...]}: one input per entry', field="instances")
    return payload["instances"]
