"""Property-based checks of the whole HTTP API against its own OpenAPI document.

schemathesis generates requests from /api/v1/openapi.json, valid ones and invalid ones,
and checks every answer: never a 5xx, a documented status code, content type and headers,
and a body that matches the documented schema. Examples are bounded so the run stays short.

Random ids only ever find 404s, so half of the cases of a route with an id use the id of a
real object (a finished job with its model, a queued job, uploaded CSV and NPZ data sets),
and the document's request examples are always sent.

The operations run in a loop inside one test rather than through `schema.parametrize()`:
the schema comes from the per-test `app` fixture, and schemathesis's fixture-based loader
does not work with the pytest this project uses.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.service.api.test_authorization import build_world

# A tus PATCH carries its chunk as application/offset+octet-stream: raw bytes, as octet-stream.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")


@schemathesis.check
def no_server_error_but_a_documented_501(ctx, response, case):
    """Never a 5xx, except MLflow's NOT_IMPLEMENTED (501) where the document says so: an MLflow
    endpoint labtrain does not serve (its multipart uploads, for one), as MLflow's client expects."""
    if response.status_code == 501 and "501" in case.operation.definition.raw.get("responses", {}):
        return None
    return not_a_server_error(ctx, response, case)


CHECKS = [
    no_server_error_but_a_documented_501,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
SETTINGS = settings(
    max_examples=20,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)  # no shrinking: it would cost minutes
# Which real objects a path parameter may name.
REAL = {
    "job_id": ("finished", "queued", "code"),
    "model_id": ("model", "finished"),
    "dataset_id": ("csv", "npz"),
    "source_id": ("source",),
}


def test_api_conforms_to_its_openapi_document(app, client, make_user, run_queued, settings):
    headers = make_user("fuzzer")  # made inside the test: the db fixture empties the tables per test
    world = build_world(client, headers, run_queued, settings)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, headers=headers)
    failures, seen = [], {}
    for result in schema.get_all_operations():
        operation = result.ok()
        # Negative cases need something to get wrong: a parameter or a body.
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if _has_inputs(operation) else [])
        for mode in modes:
            test = _test(operation, mode, world, headers, seen.setdefault(operation.label, set()))
            try:
                test()
            except Exception as exc:  # every operation runs; the report lists all that failed
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
    assert len(seen) >= 20
    # The real objects were reached: a 200 where only a real id gives one.
    assert 200 in seen["GET /api/v1/jobs/{job_id}"] and 200 in seen["GET /api/v1/models/{model_id}"]
    assert 201 in seen["POST /api/v1/jobs"] and 201 in seen["POST /api/v1/datasets"]
    assert 200 in seen["POST /api/v1/models/{model_id}/predict"]


def _test(operation, mode, world, headers, statuses):
    strategies = [operation.as_strategy(generation_mode=mode)]
    names = set(REAL) & {p.name for p in operation.path_parameters}
    for name in names:
        strategies += [
            operation.as_strategy(generation_mode=mode, path_parameters={name: world[target]}) for target in REAL[name]
        ]

    @SETTINGS
    @given(case=st.one_of(strategies))
    def check(case):
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        statuses.add(response.status_code)

    if mode is GenerationMode.POSITIVE:
        for media_type, body in _examples(operation):
            real_ids = {name: world[REAL[name][0]] for name in names}
            check = example(case=operation.Case(body=body, media_type=media_type, path_parameters=real_ids))(check)
    return check


def _has_inputs(operation) -> bool:
    definition = operation.definition.raw
    return bool(definition.get("parameters") or definition.get("requestBody"))


def _examples(operation):
    content = operation.definition.raw.get("requestBody", {}).get("content", {})
    for media_type, described in content.items():
        for named in described.get("examples", {}).values():
            yield media_type, named["value"]
