"""The endpoint table of MLflow's tracking REST API (the part after /api/2.0/mlflow/).

Requests are read into MLflow's own protobuf messages and answers built as its server builds
them (entities' to_proto(), message_to_json), so MLflow's client parses them. The table is
MLflow's own (its service descriptors): an endpoint MLflow has and labtrain does not serve is
MLflow's NOT_IMPLEMENTED (501), an unknown path ENDPOINT_NOT_FOUND (404), both in its error shape."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from google.protobuf import descriptor
from google.protobuf.json_format import ParseError
from mlflow.entities import DatasetInput, ExperimentTag, Metric, Param, RunTag
from mlflow.entities.logged_model_input import LoggedModelInput
from mlflow.entities.logged_model_output import LoggedModelOutput
from mlflow.protos import databricks_pb2
from mlflow.protos import service_pb2 as pb
from mlflow.protos.model_registry_pb2 import ModelRegistryService
from mlflow.utils.proto_json_utils import message_to_json, parse_dict
from mlflow.utils.search_utils import SearchUtils
from sqlalchemy.orm import Session

from service.core.config import Settings
from service.tracking import logged_models, search, store
from service.tracking.errors import TrackingError, invalid
from service.tracking.principal import Principal

Handler = Callable[[Session, Settings, Principal, Any], Any]
SERVED: dict[str, Handler] = {}
# Query flags MLflow's server reads beside the request message (GetLoggedModel's allow_deleted).
FLAGS: dict[str, tuple[str, ...]] = {}


def served(name: str, flags: tuple[str, ...] = ()) -> Callable[[Handler], Handler]:
    """Registers a handler; one with `flags` is also called with those query values (flags=...)."""

    def register(handler: Handler) -> Handler:
        SERVED[name] = handler
        if flags:
            FLAGS[name] = flags
        return handler

    return register


def _mlflow_endpoints() -> list[tuple[str, re.Pattern, str, type]]:
    """(method, path pattern, request class name, request class) of every 2.0 endpoint MLflow's
    tracking and model-registry services define."""
    endpoints = []
    for service in (pb.MlflowService, ModelRegistryService):
        for method in service.DESCRIPTOR.methods:
            for endpoint in method.GetOptions().Extensions[databricks_pb2.rpc].endpoints:
                if endpoint.since.major != 2:
                    continue
                path = endpoint.path.lstrip("/").removeprefix("mlflow/")
                # {model_id} in the path is a field of the request (a named group of the pattern)
                pattern = re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)) + r"\Z")
                request_class = service().GetRequestClass(method)
                endpoints.append((endpoint.method, pattern, method.input_type.name, request_class))
    return endpoints


ENDPOINTS = _mlflow_endpoints()


def handle(
    session: Session,
    settings: Settings,
    principal: Principal,
    method: str,
    endpoint: str,
    query: dict[str, list[str]],
    body: dict[str, Any] | None,
) -> tuple[int, dict[str, Any]]:
    """One request: `endpoint` is the path after /api/2.0/mlflow/ ("runs/create"), `query` the query
    string as lists of values (werkzeug's `args.to_dict(flat=False)`), `body` the parsed JSON body
    (None for none). Returns the HTTP status and MLflow's JSON answer (an error in MLflow's shape).
    Commits what a served request wrote; an error writes nothing."""
    try:
        request_class, name, path_fields = _route(method.upper(), endpoint.strip("/"))
        handler = SERVED.get(name)
        if handler is None:
            raise TrackingError(
                "NOT_IMPLEMENTED", f"{method.upper()} /api/2.0/mlflow/{endpoint} ({name}) is not served by labtrain"
            )
        message = _read(request_class(), method.upper(), query, body)
        for field, value in path_fields.items():  # the path's value wins, as in MLflow's server
            if field in message.DESCRIPTOR.fields_by_name:
                setattr(message, field, value)
        if name in FLAGS:
            flags = {flag: (query.get(flag) or [""])[0] for flag in FLAGS[name]}
            answer = handler(session, settings, principal, message, flags=flags)
        else:
            answer = handler(session, settings, principal, message)
        session.commit()
        return 200, json.loads(message_to_json(answer))
    except TrackingError as exc:
        session.rollback()
        return exc.status, exc.body()


def _route(method: str, endpoint: str) -> tuple[type, str, dict[str, str]]:
    known = [(m, name, cls, match) for m, pattern, name, cls in ENDPOINTS if (match := pattern.match(endpoint))]
    for endpoint_method, name, request_class, match in known:
        if endpoint_method == method:
            return request_class, name, match.groupdict()
    if known:
        allowed = ", ".join(sorted({m for m, _, _, _ in known}))
        raise TrackingError("ENDPOINT_NOT_FOUND", f"{endpoint} takes {allowed}, not {method}")
    raise TrackingError("ENDPOINT_NOT_FOUND", f"no MLflow endpoint {method} /api/2.0/mlflow/{endpoint}")


def _read(message, method: str, query: dict[str, list[str]], body: dict[str, Any] | None):
    """The request as MLflow's message: a GET's query string (repeated fields as lists, booleans
    as true/false), any other method's JSON body."""
    if method == "GET":
        data: dict[str, Any] = {}
        for field in message.DESCRIPTOR.fields:
            values = query.get(field.name)
            if not values:
                continue
            if _repeated(field):
                data[field.name] = list(values)
            elif field.type == descriptor.FieldDescriptor.TYPE_BOOL:
                if values[0].lower() not in ("true", "false"):
                    raise invalid(f"Invalid boolean value: {values[0]}, must be 'true' or 'false'.")
                data[field.name] = values[0].lower() == "true"
            else:
                data[field.name] = values[0]
    else:
        data = body if body is not None else {}
        if not isinstance(data, dict):
            raise invalid("the request body must be a JSON object")
    try:
        parse_dict(data, message)
    except (ParseError, TypeError, ValueError) as exc:
        raise invalid(f"Invalid request: {exc}") from None
    return message


def _repeated(field) -> bool:
    try:
        return field.is_repeated
    except AttributeError:  # protobuf before is_repeated
        return field.label == descriptor.FieldDescriptor.LABEL_REPEATED


def _required(message, *names: str) -> None:
    for name in names:
        if not getattr(message, name):
            raise invalid(f"Missing value for required parameter '{name}'. See the API docs for more information.")


def _run_id(message) -> str:
    run_id = message.run_id or getattr(message, "run_uuid", "")
    if not run_id:
        raise invalid("Missing value for required parameter 'run_id'. See the API docs for more information.")
    return run_id


def _optional(message, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


# ---- experiments ---------------------------------------------------------------------------


@served("CreateExperiment")
def _create_experiment(session, settings, principal, message):
    _required(message, "name")
    tags = [ExperimentTag(tag.key, tag.value) for tag in message.tags]
    return pb.CreateExperiment.Response(experiment_id=store.create_experiment(session, principal, message.name, tags))


@served("GetExperiment")
def _get_experiment(session, settings, principal, message):
    _required(message, "experiment_id")
    experiment = store.get_experiment(session, principal, message.experiment_id)
    return pb.GetExperiment.Response(experiment=experiment.to_proto())


@served("GetExperimentByName")
def _get_experiment_by_name(session, settings, principal, message):
    _required(message, "experiment_name")
    experiment = store.get_experiment_by_name(session, principal, message.experiment_name)
    return pb.GetExperimentByName.Response(experiment=experiment.to_proto())


@served("DeleteExperiment")
def _delete_experiment(session, settings, principal, message):
    _required(message, "experiment_id")
    store.set_experiment_lifecycle(session, principal, message.experiment_id, store.DELETED)
    return pb.DeleteExperiment.Response()


@served("RestoreExperiment")
def _restore_experiment(session, settings, principal, message):
    _required(message, "experiment_id")
    store.set_experiment_lifecycle(session, principal, message.experiment_id, store.ACTIVE)
    return pb.RestoreExperiment.Response()


@served("UpdateExperiment")
def _update_experiment(session, settings, principal, message):
    _required(message, "experiment_id", "new_name")
    store.rename_experiment(session, principal, message.experiment_id, message.new_name)
    return pb.UpdateExperiment.Response()


@served("SetExperimentTag")
def _set_experiment_tag(session, settings, principal, message):
    _required(message, "experiment_id", "key")
    store.set_experiment_tag(session, principal, message.experiment_id, message.key, message.value)
    return pb.SetExperimentTag.Response()


@served("DeleteExperimentTag")
def _delete_experiment_tag(session, settings, principal, message):
    _required(message, "experiment_id", "key")
    store.delete_experiment_tag(session, principal, message.experiment_id, message.key)
    return pb.DeleteExperimentTag.Response()


@served("SearchExperiments")
def _search_experiments(session, settings, principal, message):
    experiments, token = search.search_experiments(
        session,
        principal,
        view_type=_optional(message, "view_type"),
        max_results=_optional(message, "max_results"),
        order_by=list(message.order_by),
        filter_string=message.filter or None,
        page_token=message.page_token or None,
    )
    answer = pb.SearchExperiments.Response(experiments=[e.to_proto() for e in experiments])
    if token:
        answer.next_page_token = token
    return answer


# ---- runs ----------------------------------------------------------------------------------


@served("CreateRun")
def _create_run(session, settings, principal, message):
    run = store.create_run(
        session,
        principal,
        experiment_id=message.experiment_id,
        start_time=message.start_time or None,
        tags=[RunTag(tag.key, tag.value) for tag in message.tags],
        run_name=message.run_name or None,
    )
    return pb.CreateRun.Response(run=run.to_proto())


@served("GetRun")
def _get_run(session, settings, principal, message):
    return pb.GetRun.Response(run=store.get_run(session, principal, _run_id(message)).to_proto())


@served("UpdateRun")
def _update_run(session, settings, principal, message):
    run = store.update_run(
        session,
        principal,
        _run_id(message),
        status=pb.RunStatus.Name(message.status) if message.HasField("status") else None,
        end_time=_optional(message, "end_time"),
        run_name=_optional(message, "run_name"),
    )
    return pb.UpdateRun.Response(run_info=run.info.to_proto())


@served("DeleteRun")
def _delete_run(session, settings, principal, message):
    store.set_run_lifecycle(session, principal, _run_id(message), store.DELETED)
    return pb.DeleteRun.Response()


@served("RestoreRun")
def _restore_run(session, settings, principal, message):
    store.set_run_lifecycle(session, principal, _run_id(message), store.ACTIVE)
    return pb.RestoreRun.Response()


@served("SearchRuns")
def _search_runs(session, settings, principal, message):
    runs, token = search.search_runs(
        session,
        principal,
        experiment_ids=list(message.experiment_ids),
        filter_string=message.filter or None,
        view_type=_optional(message, "run_view_type"),
        max_results=_optional(message, "max_results"),
        order_by=list(message.order_by),
        page_token=message.page_token or None,
    )
    answer = pb.SearchRuns.Response(runs=[run.to_proto() for run in runs])
    if token:
        answer.next_page_token = token
    return answer


# ---- params, tags, metrics -----------------------------------------------------------------


@served("LogMetric")
def _log_metric(session, settings, principal, message):
    _required(message, "key")
    if not message.HasField("value") or not message.HasField("timestamp"):
        raise invalid("Missing value for required parameter 'value' or 'timestamp'.")
    metric = _metric(message)
    store.log_metric(session, settings, principal, _run_id(message), metric)
    logged_models.record_metrics(session, principal, _run_id(message), [metric])
    return pb.LogMetric.Response()


@served("LogParam")
def _log_param(session, settings, principal, message):
    _required(message, "key")
    store.log_param(session, settings, principal, _run_id(message), message.key, message.value)
    return pb.LogParam.Response()


@served("SetTag")
def _set_tag(session, settings, principal, message):
    _required(message, "key")
    store.set_tag(session, settings, principal, _run_id(message), message.key, message.value)
    return pb.SetTag.Response()


@served("DeleteTag")
def _delete_tag(session, settings, principal, message):
    _required(message, "key")
    store.delete_tag(session, principal, _run_id(message), message.key)
    return pb.DeleteTag.Response()


@served("LogBatch")
def _log_batch(session, settings, principal, message):
    for index, metric in enumerate(message.metrics):
        if not metric.key or not metric.HasField("value") or not metric.HasField("timestamp"):
            raise invalid(f"Missing value for required parameter 'metrics[{index}]': key, value and timestamp")
    for kind, items in (("params", message.params), ("tags", message.tags)):
        for index, item in enumerate(items):
            if not item.key:
                raise invalid(f"Missing value for required parameter '{kind}[{index}].key'.")
    metrics = [_metric(m) for m in message.metrics]
    store.log_batch(
        session,
        settings,
        principal,
        _run_id(message),
        metrics=metrics,
        params=[Param(p.key, p.value) for p in message.params],
        tags=[RunTag(t.key, t.value) for t in message.tags],
    )
    logged_models.record_metrics(session, principal, _run_id(message), metrics)
    return pb.LogBatch.Response()


def _metric(message) -> Metric:
    """A metric point; MLflow 3's client may name the logged model and data set it is of."""
    return store.mlflow_checked(
        lambda: Metric(
            message.key,
            message.value,
            message.timestamp,
            message.step,
            model_id=message.model_id or None,
            dataset_name=_optional(message, "dataset_name"),
            dataset_digest=_optional(message, "dataset_digest"),
        )
    )


@served("GetMetricHistory")
def _get_metric_history(session, settings, principal, message):
    _required(message, "metric_key")
    points = store.metric_history(session, principal, _run_id(message), message.metric_key)
    answer = pb.GetMetricHistory.Response()
    if message.HasField("max_results"):
        if message.max_results <= 0:
            raise invalid(f"Invalid value {message.max_results} for parameter 'max_results' supplied.")
        try:
            points, token = SearchUtils.paginate(points, message.page_token or None, message.max_results)
        except Exception as exc:  # MLflow's own parse of a bad token
            raise invalid(f"Invalid page token: {exc}") from None
        if token:
            answer.next_page_token = token.decode() if isinstance(token, bytes) else token
    answer.metrics.extend(m.to_proto() for m in points)
    return answer


# ---- logged models (MLflow 3) --------------------------------------------------------------


def _pairs(items, what: str) -> dict[str, str]:
    pairs = {}
    for index, item in enumerate(items):
        if not item.key:
            raise invalid(f"Missing value for required parameter '{what}[{index}].key'.")
        pairs[item.key] = item.value
    return pairs


def _model_answer(answer_class, model):
    return answer_class(model=model.to_proto())


@served("CreateLoggedModel")
def _create_logged_model(session, settings, principal, message):
    _required(message, "experiment_id")
    model = logged_models.create_model(
        session,
        principal,
        experiment_id=message.experiment_id,
        name=_optional(message, "name"),
        model_type=_optional(message, "model_type"),
        source_run_id=message.source_run_id or None,
        params=_pairs(message.params, "params"),
        tags=_pairs(message.tags, "tags"),
    )
    return _model_answer(pb.CreateLoggedModel.Response, model)


@served("GetLoggedModel", flags=("allow_deleted",))
def _get_logged_model(session, settings, principal, message, flags):
    allow_deleted = flags["allow_deleted"].lower() == "true"
    model = logged_models.get_model(session, principal, message.model_id, allow_deleted)
    return _model_answer(pb.GetLoggedModel.Response, model)


@served("FinalizeLoggedModel")
def _finalize_logged_model(session, settings, principal, message):
    if not message.HasField("status"):
        raise invalid("Missing value for required parameter 'status'. See the API docs for more information.")
    model = logged_models.finalize(session, principal, message.model_id, message.status)
    return _model_answer(pb.FinalizeLoggedModel.Response, model)


@served("DeleteLoggedModel")
def _delete_logged_model(session, settings, principal, message):
    logged_models.delete_model(session, principal, message.model_id)
    return pb.DeleteLoggedModel.Response()


@served("SetLoggedModelTags")
def _set_logged_model_tags(session, settings, principal, message):
    logged_models.set_tags(session, principal, message.model_id, _pairs(message.tags, "tags"))
    return pb.SetLoggedModelTags.Response()


@served("DeleteLoggedModelTag")
def _delete_logged_model_tag(session, settings, principal, message):
    logged_models.delete_tag(session, principal, message.model_id, message.tag_key)
    return pb.DeleteLoggedModelTag.Response()


@served("LogLoggedModelParamsRequest")
def _log_logged_model_params(session, settings, principal, message):
    logged_models.log_params(session, principal, message.model_id, _pairs(message.params, "params"))
    return pb.LogLoggedModelParamsRequest.Response()


@served("SearchLoggedModels")
def _search_logged_models(session, settings, principal, message):
    models, token = logged_models.search(
        session,
        principal,
        experiment_ids=list(message.experiment_ids),
        filter_string=message.filter or None,
        datasets=[
            {"dataset_name": d.dataset_name, "dataset_digest": d.dataset_digest or None} for d in message.datasets
        ],
        max_results=message.max_results or None,
        order_by=[
            {
                "field_name": o.field_name,
                "ascending": o.ascending if o.HasField("ascending") else True,
                "dataset_name": o.dataset_name or None,
                "dataset_digest": o.dataset_digest or None,
            }
            for o in message.order_by
        ],
        page_token=message.page_token or None,
    )
    answer = pb.SearchLoggedModels.Response(models=[m.to_proto() for m in models])
    if token:
        answer.next_page_token = token
    return answer


@served("LogOutputs")
def _log_outputs(session, settings, principal, message):
    outputs = [LoggedModelOutput.from_proto(m) for m in message.models]
    logged_models.log_outputs(session, principal, _run_id(message), outputs)
    return pb.LogOutputs.Response()


@served("LogInputs")
def _log_inputs(session, settings, principal, message):
    for index, item in enumerate(message.datasets):
        for field in ("name", "digest", "source_type", "source"):
            if not getattr(item.dataset, field):
                raise invalid(f"Missing value for required parameter 'datasets[{index}].dataset.{field}'.")
    datasets = [store.mlflow_checked(lambda d=d: DatasetInput.from_proto(d)) for d in message.datasets]
    models = [LoggedModelInput.from_proto(m) for m in message.models if m.model_id]
    logged_models.log_inputs(session, principal, _run_id(message), datasets, models)
    return pb.LogInputs.Response()
