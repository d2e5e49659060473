"""The OpenAPI document and the docs page: a valid document, every route in it, request
schemas that are the validators' own, examples the API accepts, and a page that loads
nothing from other hosts. (tests/service/api/test_schemathesis.py checks the answers against it.)"""

from __future__ import annotations

import re

import jsonschema_rs
import pytest
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from service.api.openapi import MLFLOW_ERROR, REF, is_static, openapi_path
from service.classic.spec import ClassicSpec, Evaluation
from service.search.spec import SearchDef, SpaceDimension

pytestmark = pytest.mark.fast  # the fast tier: no servers needed (tests/conftest.py)

SCHEMAS = "#/components/schemas/"


@pytest.fixture
def document(client, alice):
    response = client.get("/api/v1/openapi.json", headers=alice)
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


def _refs(node):
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _without(schema: dict, *keys: str) -> dict:
    return {k: v for k, v in schema.items() if k not in keys}


def test_the_document_is_valid_openapi_31(document):
    assert document["openapi"].startswith("3.1")
    errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in OPENAPI_31_VALIDATOR.iter_errors(document)]
    assert not errors, "\n".join(errors[:20])
    names = set(document["components"]["schemas"])
    assert {ref.removeprefix(SCHEMAS) for ref in _refs(document)} <= names
    for name, schema in document["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name


def test_every_route_is_in_the_document(app, document):
    rules = [rule for rule in app.url_map.iter_rules() if not is_static(rule)]
    assert len(rules) >= 20
    missing = [
        f"{method} {rule.rule}"
        for rule in rules
        for method in rule.methods - {"HEAD", "OPTIONS"}
        if method.lower() not in document["paths"].get(openapi_path(rule), {})
    ]
    assert not missing
    # and the other way round: nothing documented that the app does not serve
    served = {(openapi_path(rule), method.lower()) for rule in rules for method in rule.methods}
    assert {(path, method) for path, ops in document["paths"].items() for method in ops} <= served


def test_every_route_is_described(document):
    # A route missing from service/api/openapi.py's ROUTES is in the document with a
    # placeholder; describe it there (its query parameters, body, answers).
    undescribed = [
        f"{method.upper()} {path}"
        for path, ops in document["paths"].items()
        for method, op in ops.items()
        if op["summary"] == "Not described yet"
    ]
    assert not undescribed


def test_path_parameters_come_from_the_routes(document):
    ops = document["paths"]["/api/v1/jobs/{job_id}/events"]["get"]
    params = {(p["name"], p["in"]) for p in ops["parameters"]}
    assert params == {("job_id", "path"), ("after", "query"), ("limit", "query")}
    listing = {p["name"] for p in document["paths"]["/api/v1/jobs"]["get"]["parameters"]}
    assert listing == {"status", "limit", "cursor", "parent", "course"}


def test_the_submit_body_is_the_validators_schema(document):
    body = document["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    families = ("ClassicSpec", "NetworkSpec", "OptimizeSpec", "CodeSpec")
    assert body == {"oneOf": [{"$ref": SCHEMAS + name} for name in families]}
    schemas = document["components"]["schemas"]
    classic = ClassicSpec.model_json_schema(ref_template=REF)
    documented = schemas["ClassicSpec"]["properties"]
    assert _without(documented["params"], "description") == _without(classic["properties"]["params"], "description")
    assert documented["evaluation"] == classic["properties"]["evaluation"] == {"$ref": SCHEMAS + "Evaluation"}
    assert schemas["Evaluation"] == Evaluation.model_json_schema(ref_template=REF)
    assert schemas["ClassicSpec"]["required"] == classic["required"]
    assert schemas["ClassicSpec"]["additionalProperties"] is False
    # The search a spec may carry is SearchDef, with SpaceDimension for each dimension.
    assert {"$ref": SCHEMAS + "SearchDef"} in documented["search"]["anyOf"]
    assert schemas["SearchDef"] == _without(SearchDef.model_json_schema(ref_template=REF), "$defs")
    assert schemas["SearchDef"]["properties"]["space"]["additionalProperties"] == {"$ref": SCHEMAS + "SpaceDimension"}
    assert schemas["SpaceDimension"] == SpaceDimension.model_json_schema(ref_template=REF)


def test_the_examples_match_the_schema_and_are_accepted(client, alice, document):
    content = document["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    validator = jsonschema_rs.Draft202012Validator({**content["schema"], "components": document["components"]})
    assert set(content["examples"]) == {"classic", "network", "optimize", "search"}
    for name, named in content["examples"].items():
        assert validator.is_valid(named["value"]), name
        response = client.post("/api/v1/jobs", json=named["value"], headers=alice)
        assert response.status_code == 201, (name, response.get_json())
    invalid = {"dataset": "iris", "algorithm": "knn", "evaluation": {"test_size": 2}}
    assert not validator.is_valid(invalid)
    assert client.post("/api/v1/jobs", json=invalid, headers=alice).status_code == 422


def test_security_is_what_the_server_enforces(client, document):
    """A route documented as needing the token answers 401 without one; a public one does not."""
    wrong = []
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            public = op.get("security", document["security"]) == []
            response = client.open(re.sub(r"{\w+}", "x", path), method=method.upper())
            if (response.status_code == 401) == public or not (public or "401" in op["responses"]):
                wrong.append(f"{method} {path}: {response.status_code}, documented public={public}")
    assert not wrong
    public = {path for path, ops in document["paths"].items() if ops.get("get", {}).get("security") == []}
    assert {"/healthz", "/docs"} <= public
    assert "/api/v1/openapi.json" not in public  # like all of /api (API.md)


def test_errors_are_documented_with_the_error_shape(document):
    error = {"$ref": SCHEMAS + "Error"}
    submit = document["paths"]["/api/v1/jobs"]["post"]["responses"]
    assert {"201", "400", "401", "413", "422", "429"} <= set(submit)
    assert document["paths"]["/api/v1/jobs/{job_id}/cancel"]["post"]["responses"].keys() >= {"202", "404", "409"}
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            for status, answer in op["responses"].items():
                if status.startswith(("4", "5")):
                    # MLflow's routes (/api/2.0/...) answer in MLflow's own shape, as its client reads them.
                    mlflow = {media: {"schema": schema} for media, schema in MLFLOW_ERROR.items()}
                    shape = mlflow if path.startswith("/api/2.0/") else {"application/json": {"schema": error}}
                    assert answer["content"] == shape, (method, path, status)


def test_the_docs_page_is_served_and_uses_only_local_assets(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    html = page.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    local = [a for a in assets if a.startswith("/") and not a.startswith("//")]
    assert set(assets) - set(local) <= {"data:,"}
    assert {"/docs/static/docs.js", "/docs/static/docs.css"} <= set(local)
    for asset in [*local, "/docs/static/docs.js"]:
        response = client.get(asset)
        assert response.status_code == 200, asset
        text = response.get_data(as_text=True)
        assert not re.search(r"https?://|//cdn|@import", text), asset
    assert "/api/v1/openapi.json" in client.get("/docs/static/docs.js").get_data(as_text=True)
