"""GET /api/v1/openapi.json (the OpenAPI 3.1 document) and GET /docs (a page that renders it).

The document is built from two sources so that it cannot drift from the code:
- request schemas are the JSON schemas of the pydantic models that validate requests
  (each job family's request model and the models its registry record lists), response
  schemas those of service/api/responses.py;
- the list of paths and methods is Flask's url_map, so a route added later appears even
  before someone describes it in ROUTES below (tests/service/api/test_openapi.py flags it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, current_app, send_from_directory
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from werkzeug.routing import Rule

from service.api import responses as r
from service.api.auth import PUBLIC_PATHS
from service.competitions.spec import CompetitionCreate, ModelSubmission, Selection
from service.courses.roster import MAX_ROWS
from service.courses.spec import CourseCreate, CoursePatch, Grant, MemberRole, RosterJson
from service.data.instances import MAX_INSTANCES
from service.data.refs import DatasetRef
from service.jobs import families
from service.jobs.lifecycle import STATUSES

REF = "#/components/schemas/{model}"
RESPONSE_MODELS = (
    r.Error,
    r.Job,
    r.JobList,
    r.EventList,
    r.CancelAnswer,
    r.TrainedModel,
    r.ModelList,
    r.Prediction,
    r.DatasetInfo,
    r.DatasetList,
    r.Catalog,
    r.QueueOverview,
    r.Health,
    r.Readiness,
    r.SourceInfo,
    r.SourceList,
    r.ArtifactList,
    r.CourseInfo,
    r.CourseList,
    r.RosterAnswer,
    r.Membership,
    r.Me,
    r.CourseUsage,
    r.GrantAnswer,
    r.UploadInfo,
)
REQUEST_MODELS = (CourseCreate, CoursePatch, MemberRole, RosterJson, Grant)
ERROR_TEXT = {
    400: "Malformed request (e.g. a body that is not JSON)",
    401: "No token, or a token that is not valid",
    403: "Not allowed: the caller's role does not permit it (e.g. only admins create courses)",
    404: "Unknown id, or another user's object",
    409: "The object is in the wrong state for this",
    411: "The body has no Content-Length (an MLflow artifact upload)",
    412: "Tus-Resumable is missing or names a version other than 1.0.0 (resumable uploads)",
    413: "The body is larger than the upload limit, or an upload would pass the storage quota (quota_exceeded)",
    415: "The body's Content-Type is not the one this route takes",
    422: "A parameter, spec or payload is invalid",
    429: "A per-user limit is reached; the message says which",
    503: "Not ready, or unable to serve it now: the message names what does not answer",
    501: "An endpoint of MLflow's API that labtrain does not serve (MLflow's NOT_IMPLEMENTED)",
}
BINARY = {"type": "string", "format": "binary"}


def ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


@dataclass
class Op:
    """What the url_map cannot tell about one route."""

    summary: str
    ok: Any = None  # a response model, or {media type: schema}
    status: int = 200
    query: list[dict[str, Any]] = field(default_factory=list)
    body: dict[str, Any] | None = None  # {media type: schema}
    errors: tuple[int, ...] = ()
    headers: tuple[str, ...] = ()  # response headers of the success answer
    error_content: Any = None  # the errors' body where it is not labtrain's (MLflow's routes)


def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def int_query(name: str, low: int, high: int, description: str) -> dict[str, Any]:
    return query(name, {"type": "integer", "minimum": low, "maximum": high}, description)


def job_body() -> dict[str, Any]:
    """A job spec: one of the families' request models (a search rides inside one of them)."""
    specs = [f.request_model for f in families.submittable() if not f.wraps]
    return {
        "application/json": {
            "schema": {"oneOf": [ref(m) for m in specs]},
            # Each family's own (tests/service/api/test_openapi.py submits each and expects a 201).
            "examples": {f.name: {"value": f.example} for f in families.submittable() if f.example is not None},
        }
    }


SOURCE_BODY = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {**BINARY, "description": "train.py, a notebook, or a project as .zip or .tar.gz"},
                "name": {"type": "string", "description": "Default: the file's name"},
            },
        },
        "examples": {"script": {"value": {"file": "import labtrain_job\nlabtrain_job.report(epoch=1, loss=0.5)\n"}}},
    }
}
UPLOAD_BODY = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {
                    **BINARY,
                    "description": "CSV with a header row, NPZ with arrays x and y, or a .zip of image folders "
                    "(class_name/image.png: PNG, JPEG or BMP)",
                },
                "name": {"type": "string", "description": "Default: the file's name"},
                "target": {"type": "string", "description": "CSV: the column to predict"},
            },
        },
        "examples": {
            "csv": {
                "value": {
                    "file": "a,b,label\n" + "".join(f"{i % 7},{i % 5},{i % 2}\n" for i in range(20)),
                    "target": "label",
                }
            }
        },
    }
}
# A finished resumable upload (POST /api/v1/uploads) instead of a multipart file: the same checks.
FROM_UPLOAD = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["upload"],
            "properties": {
                "upload": {"type": "string", "description": "The upload's id; consumed once the checks pass"},
                "name": {"type": "string", "description": "Default: the upload's metadata, else the file's name"},
                "target": {"type": "string", "description": "CSV: the column to predict (data sets)"},
            },
        }
    }
}
UPLOAD_BODY |= FROM_UPLOAD
SOURCE_BODY |= FROM_UPLOAD
# A course's upload takes the same body; its example would be sent without the path's course name.
COURSE_UPLOAD_BODY = {
    media: {key: value for key, value in body.items() if key != "examples"} for media, body in UPLOAD_BODY.items()
}
PREDICT_BODY = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["instances"],
            "properties": {
                "instances": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_INSTANCES,
                    "description": "Rows of features (a list of values in feature order, or an object keyed by "
                    "feature name), or nested arrays of the model's input shape",
                    "items": {
                        "anyOf": [
                            {"type": "array", "items": {}, "description": "A row, or an input of the model's shape"},
                            {"type": "object", "additionalProperties": True, "description": "A row by feature name"},
                        ]
                    },
                }
            },
        },
        "examples": {"iris": {"value": {"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}}},
    },
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {**BINARY, "description": "An image (PNG, BMP, JPEG) of a digit; repeat the field for several"}
            },
        }
    },
}

COURSE_FIELD = {
    "anyOf": [{"type": "string", "maxLength": 64}, {"type": "null"}],
    "default": None,
    "description": "The course the job is for (one of yours); default: your only course, none if you have none",
}
ROSTER_BODY = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {**BINARY, "description": f"CSV with the header id,name,email; at most {MAX_ROWS} rows"}
            },
        },
    },
    "application/json": {"schema": ref(RosterJson)},
}


def json_body_of(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": ref(model)}}


# Keyed by method and OpenAPI path. The path parameters, security and 401/404 answers come
# from the url_map and the auth rules; only what the code cannot tell is written here.
ROUTES: dict[tuple[str, str], Op] = {
    ("POST", "/api/v1/jobs"): Op(
        "Submit a job", r.Job, 201, body=None, errors=(400, 404, 413, 422, 429), headers=("Location",)
    ),
    ("GET", "/api/v1/jobs"): Op(
        "List jobs (your own, and your courses' for their instructors and TAs; an admin's: all), newest first",
        r.JobList,
        query=[
            query("status", {"type": "string", "enum": list(STATUSES)}, "Only jobs in this status"),
            int_query("limit", 1, 500, "Page size (default 50)"),
            query("cursor", {"type": "string"}, "next_cursor of the previous page"),
            query("parent", {"type": "string"}, "Only the trials of this search job"),
            query("course", {"type": "string"}, "Only the jobs of this course (one of yours)"),
        ],
        errors=(422,),
    ),
    ("GET", "/api/v1/jobs/{job_id}"): Op("A job", r.Job),
    ("GET", "/api/v1/jobs/{job_id}/events"): Op(
        "A job's events (epochs, trials, status changes, logs) in order",
        {
            "application/json": ref(r.EventList),
            "text/event-stream": {"type": "string", "description": "The same events as server-sent events"},
        },
        query=[
            int_query("after", 0, 2**31 - 1, "Only events with a larger seq (default 0)"),
            int_query("limit", 1, 10_000, "At most this many events (default 1000)"),
        ],
        errors=(422,),
    ),
    ("GET", "/api/v1/events"): Op(
        "The caller's jobs (an admin's: everyone's) as they change, as server-sent `job` events: first "
        "every queued or running job, then each job whenever its status, progress or events move on, and "
        "once more when it finishes. The dashboard's job list follows it; a client that reconnects gets "
        "them all again",
        {
            "text/event-stream": {
                "type": "object",
                "description": "One server-sent event",
                "properties": {
                    "event": {"type": "string", "enum": ["job"]},
                    "data": {
                        "type": "string",
                        "description": "The job as JSON: id, name, family, status, progress, last_event (its "
                        "newest event's seq), finished_at",
                    },
                },
                "required": ["event", "data"],
            }
        },
    ),
    ("GET", "/api/v1/jobs/{job_id}/log"): Op(
        "A job's log (what its training or its script printed); X-Log-Offset says where to ask from next",
        {"text/plain": {"type": "string"}},
        query=[int_query("offset", 0, 2**62, "Only the log from this byte on (default 0)")],
        errors=(422,),
        headers=("X-Log-Offset",),
    ),
    ("GET", "/api/v1/jobs/{job_id}/artifacts"): Op("The files a code job left in its outputs/ folder", r.ArtifactList),
    ("GET", "/api/v1/jobs/{job_id}/artifacts/{artifact}"): Op(
        "One artifact file, as a download", {"application/octet-stream": BINARY}
    ),
    ("GET", "/api/v1/jobs/{job_id}/notebook"): Op(
        "A notebook job's executed notebook as an inert HTML page, rendered by its worker",
        {"text/html": {"type": "string"}},
    ),
    ("POST", "/api/v1/sources"): Op(
        "Upload code: one .py or .ipynb file, or a project as .zip or .tar.gz (multipart, or a finished "
        "resumable upload as JSON)",
        r.SourceInfo,
        201,
        body=SOURCE_BODY,
        errors=(400, 404, 409, 413, 422),
        headers=("Location",),
    ),
    ("GET", "/api/v1/sources"): Op("List your uploaded code", r.SourceList),
    ("GET", "/api/v1/sources/{source_id}"): Op("An uploaded source and its files", r.SourceInfo),
    ("POST", "/api/v1/jobs/{job_id}/cancel"): Op(
        "Cancel a job: a queued one at once, a running one within a batch or trial", r.CancelAnswer, 202, errors=(409,)
    ),
    ("GET", "/api/v1/models"): Op(
        "List models (your own, and your courses' for their instructors and TAs; an admin's: all)", r.ModelList
    ),
    ("GET", "/api/v1/models/{model_id}"): Op("A model, by its id or its job's id", r.TrainedModel, errors=(409,)),
    ("GET", "/api/v1/models/{model_id}/download"): Op(
        "The model's artifact file", {"application/octet-stream": BINARY}, errors=(409,)
    ),
    ("POST", "/api/v1/models/{model_id}/predict"): Op(
        "Predict with a model: JSON instances, or image files for image models. The model answers from a "
        "process of its own with limits: past them, a 422 prediction_limit_exceeded",
        r.Prediction,
        body=PREDICT_BODY,
        errors=(400, 409, 413, 422, 429, 503),
    ),
    ("POST", "/api/v1/datasets"): Op(
        "Upload a data set: a multipart file, or a finished resumable upload as JSON",
        r.DatasetInfo,
        201,
        body=UPLOAD_BODY,
        errors=(400, 404, 409, 413, 422),
        headers=("Location",),
    ),
    ("GET", "/api/v1/datasets"): Op("List the built-in data sets and your uploads", r.DatasetList),
    ("GET", "/api/v1/datasets/{dataset_id}"): Op("A data set", r.DatasetInfo),
    ("GET", "/api/v1/algorithms"): Op(
        "Every algorithm, network preset, layer type and search strategy with its parameters", r.Catalog
    ),
    ("GET", "/api/v1/queue"): Op("Queued and running counts, workers, and your queued jobs in order", r.QueueOverview),
    ("POST", "/api/v1/courses"): Op(
        "Create a course (admins)",
        r.CourseInfo,
        201,
        body=json_body_of(CourseCreate),
        errors=(400, 403, 409, 422),
        headers=("Location",),
    ),
    ("GET", "/api/v1/courses"): Op("Your courses with your roles (an admin's: every course)", r.CourseList),
    ("GET", "/api/v1/courses/{name}"): Op("A course you are a member of (its members: for staff)", r.CourseInfo),
    ("PATCH", "/api/v1/courses/{name}"): Op(
        "Change a course's term_end, budget or share (its instructors, admins)",
        r.CourseInfo,
        body=json_body_of(CoursePatch),
        errors=(400, 403, 422),
    ),
    ("POST", "/api/v1/courses/{name}/roster"): Op(
        "Enrol students from a CSV or a JSON list, creating missing users (their tokens: in this answer only)",
        r.RosterAnswer,
        body=ROSTER_BODY,
        errors=(400, 403, 413, 422),
    ),
    ("PUT", "/api/v1/courses/{name}/members/{user_name}"): Op(
        "Give a user a role in the course (its instructors, admins)",
        r.Membership,
        body=json_body_of(MemberRole),
        errors=(400, 403, 422),
    ),
    ("DELETE", "/api/v1/courses/{name}/members/{user_name}"): Op(
        "Take a role (?role=), or every role, from a user in the course (its instructors, admins)",
        r.Membership,
        query=[query("role", {"type": "string", "enum": ["instructor", "ta", "student"]}, "Only this role")],
        errors=(403, 409, 422),
    ),
    ("POST", "/api/v1/courses/{name}/datasets"): Op(
        "Publish a data set to the course (its instructors, admins): every member reads it as "
        '{"course": ..., "name": ...}; a closed course takes none (409 course_closed)',
        r.DatasetInfo,
        201,
        body=COURSE_UPLOAD_BODY,
        errors=(400, 403, 409, 413, 422),
        headers=("Location",),
    ),
    ("GET", "/api/v1/courses/{name}/datasets"): Op("The course's data sets (its members, admins)", r.DatasetList),
    ("GET", "/api/v1/me"): Op(
        "Who you are, your courses with the device hours your jobs used and have left there, and your "
        "queued jobs with their place in the queue",
        r.Me,
    ),
    ("GET", "/api/v1/courses/{name}/usage"): Op(
        "Each student's budget, grants, use and what is left (its instructors and TAs, admins)",
        r.CourseUsage,
        errors=(403,),
    ),
    ("POST", "/api/v1/courses/{name}/grants"): Op(
        "Grant a student GPU-hours or CPU-hours on top of the course's budget (its instructors, admins)",
        r.GrantAnswer,
        201,
        body=json_body_of(Grant),
        errors=(400, 403, 422),
    ),
    ("GET", "/api/v1/openapi.json"): Op("This document", {"application/json": {"type": "object"}}),
    ("GET", "/healthz"): Op("Liveness check", r.Health),
    ("GET", "/readyz"): Op("Readiness: 200 when the database and the broker answer", r.Readiness, errors=(503,)),
    ("GET", "/metrics"): Op(
        "Prometheus metrics (with LABTRAIN_METRICS_TOKEN set, that token as Bearer)",
        {"text/plain": {"type": "string"}},
        errors=(401,),
    ),
    ("GET", "/"): Op("The web dashboard", {"text/html": {"type": "string"}}),
    ("GET", "/docs"): Op("This API's documentation page", {"text/html": {"type": "string"}}),
}

# Resumable uploads (service/api/uploads.py: the tus 1.0.0 protocol; HEAD and OPTIONS, which
# this document leaves out, are in docs/uploads.md).


def header(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": required, "schema": schema, "description": description}


TUS_VERSION = header("Tus-Resumable", {"type": "string", "const": "1.0.0"}, "The protocol's version", True)
BYTES = {"type": "string", "pattern": "^[0-9]{1,19}$"}
ROUTES.update(
    {
        ("POST", "/api/v1/uploads"): Op(
            "Start a resumable upload of a data set or a source; PATCH its bytes to the Location, then "
            'POST {"upload": id} to /api/v1/datasets, /api/v1/sources or a course\'s data sets',
            r.UploadInfo,
            201,
            query=[
                TUS_VERSION,
                header("Upload-Length", BYTES, "The file's size in bytes", True),
                header(
                    "Upload-Metadata",
                    {"type": "string"},
                    "`key base64(value)` pairs separated by commas: filename (required), kind (dataset or "
                    "source), name, target",
                ),
            ],
            errors=(400, 412, 413, 422),
            headers=("Location", "Upload-Expires"),
        ),
        ("PATCH", "/api/v1/uploads/{upload_id}"): Op(
            "Append bytes at Upload-Offset (the upload's offset, else a 409 naming it); the new offset in "
            "Upload-Offset",
            {},
            204,
            query=[TUS_VERSION, header("Upload-Offset", BYTES, "Where these bytes start", True)],
            body={"application/offset+octet-stream": {"schema": BINARY}},
            errors=(400, 409, 412, 413, 415),
            headers=("Upload-Offset",),
        ),
        ("DELETE", "/api/v1/uploads/{upload_id}"): Op(
            "Remove an upload and its bytes (tus termination)", {}, 204, query=[TUS_VERSION], errors=(412,)
        ),
    }
)

# Built-in data sets (service/api/builtin_datasets.py).
ROUTES.update(
    {
        ("POST", "/api/v1/datasets/builtin/{name}/fetch"): Op(
            "Install a built-in data set (mnist, fashion_mnist, cifar10) from its published location, checked "
            "against its checksums, in the background (admins); GET /api/v1/datasets/{name} shows its download",
            r.DatasetInfo,
            202,
            errors=(403, 404, 409),
            headers=("Location",),
        ),
    }
)

# Competitions (service/api/competitions.py): answers are JSON objects or CSV files.
OBJECT, CSV = {"application/json": {"type": "object"}}, {"text/csv": {"type": "string"}}
PREDICTIONS_BODY = {
    **json_body_of(ModelSubmission),
    "multipart/form-data": {"schema": {"type": "object", "properties": {"file": BINARY}, "required": ["file"]}},
}
REQUEST_MODELS += (CompetitionCreate, ModelSubmission, Selection)
ROUTES.update(
    {
        ("POST", "/api/v1/courses/{name}/competitions"): Op(
            "Create a competition on a hidden test set of yours (the course's instructors, admins)",
            OBJECT,
            201,
            body=json_body_of(CompetitionCreate),
            errors=(400, 403, 409, 422),
            headers=("Location",),
        ),
        ("GET", "/api/v1/courses/{name}/competitions"): Op("The course's competitions (its members)", OBJECT),
        ("GET", "/api/v1/competitions/{competition_id}"): Op("A competition: everything but its labels", OBJECT),
        ("GET", "/api/v1/competitions/{competition_id}/test-inputs"): Op(
            "The test set's inputs with an id column, never its labels (CSV)", CSV
        ),
        ("POST", "/api/v1/competitions/{competition_id}/submissions"): Op(
            "Submit a model of yours or a predictions CSV (id,prediction); scored by a job (the course's students)",
            OBJECT,
            202,
            body=PREDICTIONS_BODY,
            errors=(400, 403, 409, 413, 422, 429),
            headers=("Location",),
        ),
        ("GET", "/api/v1/competitions/{competition_id}/submissions"): Op(
            "Your submissions (staff: everyone's) and what you have left today", OBJECT
        ),
        ("POST", "/api/v1/competitions/{competition_id}/submissions/{submission_id}/select"): Op(
            "Choose (or with selected: false, unchoose) a scored submission for the final ranking",
            OBJECT,
            body=json_body_of(Selection),
            errors=(400, 409, 422),
        ),
        ("GET", "/api/v1/competitions/{competition_id}/leaderboard"): Op(
            "The public leaderboard while open, the private one once closed", OBJECT
        ),
        ("GET", "/api/v1/competitions/{competition_id}/grades.csv"): Op(
            "Each student's rank and scores (the course's instructors and TAs)", CSV, errors=(403,)
        ),
    }
)


# Runs compared side by side (service/api/compare.py, service/compare).
RESPONSE_MODELS += (r.Comparison,)
ROUTES.update(
    {
        ("GET", "/api/v1/compare"): Op(
            "Jobs (or MLflow runs that are no job) side by side: each one's parameters (its spec flattened with "
            "dots; a run's logged params), final metrics and curves (per metric: epoch events by epoch, metrics "
            "events and a run's metric history by step), and which parameters and metrics differ; "
            "as CSV (one row per item) with format=csv or Accept: text/csv",
            {"application/json": ref(r.Comparison), "text/csv": {"type": "string"}},
            query=[
                query("ids", {"type": "string"}, "2 to 50 job or run ids, separated by commas (or give search)"),
                query("search", {"type": "string"}, "A search's id: compare its trials (instead of ids)"),
                query("format", {"type": "string", "enum": ["json", "csv"]}, "json (default) or csv"),
            ],
            errors=(404, 422),
        ),
    }
)

# MLflow runs that are no job, listed (service/api/runs.py, service/compare/run_list.py).
RESPONSE_MODELS += (r.RunList,)
ROUTES.update(
    {
        ("GET", "/api/v1/runs"): Op(
            "MLflow runs that are no job (logged from a laptop with MLFLOW_TRACKING_URI set to labtrain): your own, "
            "your courses' for their instructors and TAs, an admin's: all; newest first (by start time)",
            r.RunList,
            query=[
                query("experiment", {"type": "string"}, "Only the runs of this experiment (its id or name)"),
                query("owner", {"type": "string"}, "Only this user's runs (for a course's staff and admins)"),
                int_query("limit", 1, 500, "Page size (default 50)"),
                query("cursor", {"type": "string"}, "next_cursor of the previous page"),
            ],
            errors=(422,),
        ),
    }
)

# MLflow's tracking REST API (service/api/mlflow.py, service/tracking): MLflow's own requests and
# answers (its protobuf messages as JSON), errors in MLflow's shape.
MLFLOW_ERROR = {
    "application/json": {
        "type": "object",
        "required": ["error_code", "message"],
        "properties": {
            "error_code": {"type": "string", "description": "MLflow's error code, e.g. RESOURCE_DOES_NOT_EXIST"},
            "message": {"type": "string"},
        },
    }
}
MLFLOW_ENDPOINT = (
    "MLflow's tracking REST API, for MLflow's client (MLFLOW_TRACKING_URI=<this server>, "
    "MLFLOW_TRACKING_TOKEN=<your token>); endpoint is the part after /api/2.0/mlflow/ (experiments/create, "
    "runs/log-batch, runs/search, metrics/get-history, ...). Jobs are runs (experiment 1, labtrain-jobs). "
)
MLFLOW_ANSWER = {"application/json": {"type": "object", "description": "MLflow's answer message as JSON"}}
MLFLOW_BODY = {"application/json": {"schema": {"type": "object", "description": "MLflow's request message as JSON"}}}
ROUTES.update(
    {
        ("GET", "/api/2.0/mlflow/{endpoint}"): Op(
            MLFLOW_ENDPOINT + "GET: the request's fields as query parameters (runs/get, metrics/get-history, ...)",
            MLFLOW_ANSWER,
            errors=(400, 403, 404, 501),
            error_content=MLFLOW_ERROR,
        ),
        **{
            (method, "/api/2.0/mlflow/{endpoint}"): Op(
                MLFLOW_ENDPOINT + f"{method}: the request's fields as a JSON body",
                MLFLOW_ANSWER,
                body=MLFLOW_BODY,
                errors=(400, 403, 404, 413, 501),
                error_content=MLFLOW_ERROR,
            )
            for method in ("POST", "PATCH", "DELETE")
        },
    }
)


# MLflow's proxied artifact routes (service/api/mlflow_artifacts.py, service/tracking/artifacts.py):
# a run's artifact_uri is mlflow-artifacts:/<experiment_id>/<run_id>/artifacts, and artifact_path
# below is that path and a file's under it; the run id decides who may read or write.
ARTIFACT_PATH = "artifact_path is <experiment_id>/<run_id>/artifacts/<file path>, as the run's artifact_uri names it"
MLFLOW_ARTIFACT_ERRORS = (400, 403, 404)
ROUTES.update(
    {
        ("GET", "/api/2.0/mlflow-artifacts/artifacts"): Op(
            "List a folder of a run's artifacts (MLflow's client: list_artifacts): its files and folders by name",
            {
                "application/json": {
                    "type": "object",
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["path", "is_dir"],
                                "properties": {
                                    "path": {"type": "string"},
                                    "is_dir": {"type": "boolean"},
                                    "file_size": {"type": "integer", "description": "Bytes; files only"},
                                },
                            },
                        }
                    },
                }
            },
            query=[query("path", {"type": "string"}, "<experiment_id>/<run_id>/artifacts[/<folder>]")],
            errors=MLFLOW_ARTIFACT_ERRORS,
            error_content=MLFLOW_ERROR,
        ),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts/{artifact_path}"): Op(
            f"Download one of a run's artifact files; {ARTIFACT_PATH}",
            {"application/octet-stream": BINARY},
            errors=MLFLOW_ARTIFACT_ERRORS,
            error_content=MLFLOW_ERROR,
        ),
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/{artifact_path}"): Op(
            f"Upload a file to a run's artifacts (the body is the file, with its Content-Length); {ARTIFACT_PATH}. "
            "A job's run holds at most its outputs limit (LABTRAIN_MAX_OUTPUTS_MB), other runs count against "
            "their owner's storage quota: past either, MLflow's RESOURCE_LIMIT_EXCEEDED with a 413",
            MLFLOW_ANSWER,
            body={"application/octet-stream": {"schema": BINARY}},
            errors=(*MLFLOW_ARTIFACT_ERRORS, 411, 413),
            error_content=MLFLOW_ERROR,
        ),
        ("DELETE", "/api/2.0/mlflow-artifacts/artifacts/{artifact_path}"): Op(
            f"Delete a file or a folder of a run's artifacts; {ARTIFACT_PATH}",
            MLFLOW_ANSWER,
            errors=MLFLOW_ARTIFACT_ERRORS,
            error_content=MLFLOW_ERROR,
        ),
        **{
            ("POST", f"/api/2.0/mlflow-artifacts/mpu/{action}/{{artifact_path}}"): Op(
                f"MLflow's multipart upload ({action}): not served, always MLflow's NOT_IMPLEMENTED (501), "
                "after which MLflow's client uploads the file in one PUT",
                MLFLOW_ANSWER,
                body=MLFLOW_BODY,
                errors=(501,),
                error_content=MLFLOW_ERROR,
            )
            for action in ("create", "complete", "abort")
        },
        ("GET", "/api/2.0/mlflow-artifacts/presigned/{artifact_path}"): Op(
            "MLflow's presigned download: not served, always MLflow's NOT_IMPLEMENTED (501); the client "
            "downloads through /api/2.0/mlflow-artifacts/artifacts instead",
            MLFLOW_ANSWER,
            errors=(501,),
            error_content=MLFLOW_ERROR,
        ),
    }
)


def component_schemas() -> dict[str, Any]:
    specs = [f.request_model for f in families.submittable() if not f.wraps]
    wrappers = [f.request_model for f in families.submittable() if f.wraps]
    extra = [DatasetRef, *wrappers, *(m for f in families.submittable() for m in f.schemas)]
    models = list(dict.fromkeys((*specs, *extra, *REQUEST_MODELS, *RESPONSE_MODELS)))
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    schemas = top["$defs"]
    # The specs take these fields as Any and validate them with another model in a second
    # step (so that errors name the field precisely); the document shows that model.
    for model in specs:
        props = schemas[model.__name__]["properties"]
        # Every family takes it; the API resolves it before the family validates the rest.
        props["course"] = COURSE_FIELD
        if "dataset" in props:
            props["dataset"] = {
                "description": props["dataset"].get("description", ""),
                "anyOf": [{"type": "string", "description": "A built-in data set's name"}, ref(DatasetRef)],
            }
        if "search" in props and wrappers:
            props["search"] = {
                "description": "A hyperparameter search whose trials run this spec",
                "default": None,
                "anyOf": [*(ref(w) for w in wrappers), {"type": "null"}],
            }
    for family in families.all_families():
        if family.schema_patch is not None:
            family.schema_patch(schemas, ref)
    return schemas


def openapi_path(rule: Rule) -> str:
    """Flask's /jobs/<job_id> (or <path:name>) spelled as OpenAPI's /jobs/{job_id}."""
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.rule)


def is_public(path: str) -> bool:
    # The same rule as auth._authenticate: /api/* needs a token unless listed as public.
    return path in PUBLIC_PATHS or not path.startswith("/api/")


def content(schema_or_model: Any) -> dict[str, Any]:
    if isinstance(schema_or_model, type) and issubclass(schema_or_model, BaseModel):
        return {"application/json": {"schema": ref(schema_or_model)}}
    return {media: {"schema": schema} for media, schema in schema_or_model.items()}


def operation(rule: Rule, path: str, method: str) -> dict[str, Any]:
    op = ROUTES.get((method, path)) or Op("Not described yet", {"*/*": {}})
    success: dict[str, Any] = {"description": op.summary, "content": content(op.ok)}
    if op.headers:
        success["headers"] = {h: {"required": True, "schema": {"type": "string"}} for h in op.headers}
    errors = set(op.errors)
    if rule.arguments:
        errors.add(404)  # an unknown id, another user's object, or an id with a "/" that matches no route
    public = is_public(rule.rule)
    if not public:
        errors.add(401)
    described: dict[str, Any] = {
        "operationId": f"{rule.endpoint}.{method.lower()}",
        "summary": op.summary,
        "tags": [rule.endpoint.split(".")[0]],
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
            for name in sorted(rule.arguments)
        ]
        + op.query,
        "responses": {str(op.status): success}
        | {
            str(code): {"description": ERROR_TEXT[code], "content": content(op.error_content or r.Error)}
            for code in sorted(errors)
        },
    }
    body = job_body() if (method, path) == ("POST", "/api/v1/jobs") else op.body
    if body is not None:
        # A body of several media types (predict: JSON or images) is described as optional:
        # openapi-python-client 0.29 emits code that cannot import for a required one
        # (openapi-generators/openapi-python-client#1451). A predict without one is a 4xx.
        described["requestBody"] = {"required": len(body) == 1, "content": body}
    if public:
        described["security"] = []
    return described


def is_static(rule: Rule) -> bool:
    return rule.endpoint == "static" or rule.endpoint.endswith(".static")


def build_document(app: Flask) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule):
        if is_static(rule):
            continue
        path = openapi_path(rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = operation(rule, path, method)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "labtrain",
            "version": "1",
            "description": "Training jobs, models and data sets for the lab. Errors are always "
            '{"error": {"code", "message", "details"}}; details.field names the bad field.',
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": component_schemas(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "labtrain users create NAME prints a token",
                }
            },
        },
        "security": [{"bearer": []}],
    }


api = Blueprint("openapi", __name__)
docs = Blueprint("docs", __name__, url_prefix="/docs", static_folder="static/docs", static_url_path="/static")


def init_app(app: Flask) -> None:
    app.register_blueprint(api)
    app.register_blueprint(docs)


@api.get("/api/v1/openapi.json")
def openapi_json():
    # Built once per app: the url_map and the models do not change while it runs.
    if "labtrain.openapi" not in current_app.extensions:
        current_app.extensions["labtrain.openapi"] = build_document(current_app)
    return current_app.extensions["labtrain.openapi"]


# The page loads nothing from other hosts, and sends the token to none.
CSP = "default-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"


@docs.get("")
def docs_page():
    response = send_from_directory(docs.static_folder, "index.html", mimetype="text/html", max_age=0)
    response.headers["Content-Security-Policy"] = CSP
    return response
