"""GET /openapi.json describes every route the app serves, and real responses match it."""

import json
import re
import time

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from balance_service import __version__, create_app
from balance_service.models import USER_DISABLED
from balance_service.openapi import document

DOC = document()
BASE = "urn:balance-service:openapi"
REGISTRY = Registry().with_resource(BASE, Resource.from_contents(DOC, default_specification=DRAFT202012))
OPERATION_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
AUTHENTICATED = sorted(path for path, item in DOC["paths"].items() if item["get"].get("security"))
PUBLIC = sorted(set(DOC["paths"]) - set(AUTHENTICATED))
DEAD_DATABASE = "sqlite:////nonexistent-dir/sub/balance.sqlite3"


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def check_against_document(response, path: str, method: str = "get") -> None:
    """The status is documented for this operation and the JSON body matches its schema."""
    responses = DOC["paths"][path][method]["responses"]
    status = str(response.status_code)
    assert status in responses, f"{method.upper()} {path} answered {status}, which the document does not list"
    location = ("paths", path, method, "responses", status)
    documented = responses[status]
    if "$ref" in documented:
        location = tuple(documented["$ref"].removeprefix("#/").split("/"))
        documented = REGISTRY.resolver(BASE).lookup(BASE + documented["$ref"]).contents
    assert response.mimetype in documented["content"]
    if not response.is_json:  # /metrics: Prometheus text, described as a string
        assert documented["content"][response.mimetype]["schema"] == {"type": "string"}
        return
    body = response.get_json()
    schema_pointer = _pointer(*location, "content", response.mimetype, "schema")
    Draft202012Validator({"$ref": BASE + schema_pointer}, registry=REGISTRY).validate(body)
    schema = REGISTRY.resolver(BASE).lookup(BASE + schema_pointer).contents
    if "$ref" in schema:
        schema = REGISTRY.resolver(BASE).lookup(BASE + schema["$ref"]).contents
    if "properties" in schema:  # every field the service writes is described
        assert set(body) <= set(schema["properties"]), set(body) - set(schema["properties"])


def openapi_path(rule: str) -> str:
    """Werkzeug ``/items/<int:id>`` → OpenAPI ``/items/{id}``."""
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule)


def test_document_is_valid_openapi_3_1(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.is_json
    served = json.loads(response.get_data())
    assert served["openapi"].startswith("3.1.")
    assert served["info"]["version"] == __version__
    OpenAPIV31SpecValidator(served).validate()


def test_the_validator_would_notice_a_broken_document():
    broken = document()
    del broken["paths"]["/v1/balance"]["get"]["responses"]["200"]["description"]  # required by OpenAPI
    with pytest.raises(OpenAPIValidationError):
        OpenAPIV31SpecValidator(broken).validate()


def test_every_route_is_documented_and_every_documented_operation_exists(app):
    served = {
        (openapi_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {
        (path, method) for path, item in DOC["paths"].items() for method in item if method in OPERATION_METHODS
    }
    assert served - documented == set(), "routes missing from the document"
    assert documented - served == set(), "documented operations the app does not serve"


def test_document_needs_no_key_and_other_origins_may_read_it(client):
    response = client.get("/openapi.json", headers={"Origin": "https://editor.example"})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://editor.example")


def test_serving_the_document_does_not_let_a_caller_change_it(client):
    document()["paths"].clear()
    assert "/v1/balance" in client.get("/openapi.json").get_json()["paths"]


@pytest.mark.parametrize("path", AUTHENTICATED)
def test_authenticated_endpoints_answer_as_documented(client, auth, create_user, create_token, path):
    good = create_token(user_id=create_user(quota=1500000, used_quota=3), remain_quota=750001, used_quota=1)
    unlimited = create_token(unlimited_quota=True, expired_time=int(time.time()) + 60)
    blocked = create_token(user_id=create_user(status=USER_DISABLED))
    orphan = create_token(user_id=987654321)
    answers = [
        client.get(path, headers=auth(good)),
        client.get(path, headers=auth(unlimited)),
        client.get(path),
        client.get(path, headers=auth("sk-" + "x" * 48)),
        client.get(path, headers=auth(blocked)),
        client.get(path, headers=auth(orphan)),
        client.post(path, headers=auth(good)),
        create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": DEAD_DATABASE})
        .test_client()
        .get(path, headers=auth(good)),
    ]
    for response in answers:
        check_against_document(response, path)
    seen = {str(r.status_code) for r in answers}
    # Every documented status was produced for real, except 500 which needs a bug to happen.
    assert seen == set(DOC["paths"][path]["get"]["responses"]) - {"500"}


@pytest.mark.parametrize("path", PUBLIC)
def test_public_endpoints_answer_as_documented(client, path):
    answers = [client.get(path), client.delete(path)]
    if path == "/readyz":
        answers.append(create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": DEAD_DATABASE}).test_client().get(path))
    for response in answers:
        check_against_document(response, path)
    seen = {str(r.status_code) for r in answers}
    assert seen == set(DOC["paths"][path]["get"]["responses"]) - {"500"}


@pytest.mark.parametrize("unit", ["CNY", "tokens"])
def test_balance_bodies_match_the_document_in_every_unit(make_app, auth, create_token, unit):
    client = make_app(BALANCE_UNIT=unit).test_client()
    key = create_token(remain_quota=12345, used_quota=678)
    for path in ("/v1/balance", "/v1/user/balance"):
        response = client.get(path, headers=auth(key))
        assert response.status_code == 200
        check_against_document(response, path)
