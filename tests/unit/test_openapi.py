"""shared.openapi: the OpenAPI 3.1 document is complete, self-consistent and matches the models.

Structure rules checked here come from the OpenAPI Specification 3.1.0 (spec.openapis.org/oas/
v3.1.0): §4.8.8 path templating ("each template expression in the path MUST correspond to a path
parameter"), §4.8.12 parameter ``required`` "MUST be true" for ``in: path``, §4.8.16/17 every
Responses object has at least one response and each Response a ``description``, §4.8.23 Reference
objects, §4.8.27/30 security schemes and requirements (an empty array removes security).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from shared import openapi
from shared.jsonbody import loads, validate
from shared.models import (
    ArchiveLine,
    ArchiveResult,
    Availability,
    ForecastAccepted,
    ForecastBatch,
    Health,
    PricingPage,
    Problem,
    Quote,
    QuoteAccepted,
    QuoteStatus,
)

pytestmark = pytest.mark.unit

EXPECTED_OPERATIONS = {
    ("/api/quotes", "post"),
    ("/api/quotes/{quoteId}", "get"),
    ("/api/quotes/archive", "post"),
    ("/api/pricing", "get"),
    ("/api/forecasts", "post"),
    ("/api/products/{sku}/availability", "get"),
    ("/api/health", "get"),
    ("/api/openapi.json", "get"),
    ("/api/dashboard", "get"),
}
ANONYMOUS = {("/api/health", "get"), ("/api/openapi.json", "get")}
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi.build_openapi()


def resolve(document: dict[str, Any], ref: str) -> Any:
    """Follow a local JSON-pointer $ref (RFC 6901 unescaping)."""
    assert ref.startswith("#/"), ref
    target: Any = document
    for part in ref[2:].split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(target, dict), ref
        assert key in target, f"unresolved $ref {ref}"
        target = target[key]
    return target


def deref(document: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = resolve(document, node["$ref"])
    return node


def all_refs(node: Any) -> list[str]:
    refs: list[str] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("$ref"), str):
                refs.append(item["$ref"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return refs


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


# --- the document as a whole ---------------------------------------------------------------------


def test_the_document_is_openapi_3_1_and_plain_json(document):
    # Given the generated document; then it is 3.1.0 with info, and strict JSON (no NaN, no
    # Python objects) that reads back identically
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"]
    assert document["info"]["version"]
    text = json.dumps(document, allow_nan=False)
    assert json.loads(text) == document
    assert json.loads(openapi.openapi_json()) == document


def test_the_document_passes_the_openapi_spec_validator(document):
    # openapi-spec-validator checks the document against the official OAS 3.1 JSON Schema and
    # resolves every reference. It is a dev dependency (requirements-dev.txt).
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(document)


def test_every_path_and_operation_is_present(document):
    found = {(path, method) for path, method, _ in operations(document)}
    assert found == EXPECTED_OPERATIONS
    assert all(path.startswith("/") for path in document["paths"])


def test_every_ref_resolves(document):
    refs = all_refs(document)
    assert len(refs) > 50
    for ref in refs:
        resolve(document, ref)


def test_component_schemas_are_self_contained(document):
    schemas = document["components"]["schemas"]
    # Given the schemas generated from the models; then none keeps pydantic's local $defs
    assert not any("$defs" in schema for schema in schemas.values())
    for ref in all_refs(schemas):
        assert ref.startswith("#/components/schemas/")


def test_operation_ids_are_unique(document):
    ids = [op["operationId"] for _, _, op in operations(document)]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][A-Za-z]+", i) for i in ids)


def test_every_operation_has_described_responses_with_typed_content(document):
    for path, method, op in operations(document):
        responses = op["responses"]
        assert responses, (path, method)
        assert all(re.fullmatch(r"[1-5][0-9][0-9]", status) for status in responses)
        assert any(status.startswith("2") for status in responses), (path, method)
        for status, response in responses.items():
            response = deref(document, response)
            assert response["description"], (path, method, status)
            for media, content in response.get("content", {}).items():
                assert "/" in media
                assert "schema" in content, (path, method, status, media)


def test_every_parameter_is_typed_and_path_templates_match(document):
    for path, method, op in operations(document):
        params = [deref(document, p) for p in op.get("parameters", [])]
        for param in params:
            assert param["in"] in {"query", "header", "path", "cookie"}
            assert "type" in param["schema"], (path, method, param["name"])
        declared = {p["name"] for p in params if p["in"] == "path"}
        assert declared == set(re.findall(r"\{([^}]+)\}", path)), (path, method)
        assert all(p["required"] is True for p in params if p["in"] == "path")
        names = [(p["name"], p["in"]) for p in params]
        assert len(names) == len(set(names)), (path, method)


def test_request_bodies_name_their_content_type(document):
    bodies = {
        (path, method): op["requestBody"]
        for path, method, op in operations(document)
        if "requestBody" in op
    }
    assert set(bodies) == {
        ("/api/quotes", "post"),
        ("/api/forecasts", "post"),
        ("/api/quotes/archive", "post"),
    }
    assert list(bodies["/api/quotes", "post"]["content"]) == ["application/json"]
    assert list(bodies["/api/forecasts", "post"]["content"]) == ["application/json"]
    assert list(bodies["/api/quotes/archive", "post"]["content"]) == ["application/x-ndjson"]
    assert all(body["required"] is True for body in bodies.values())
    assert bodies["/api/quotes", "post"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Quote"
    }


# --- security ------------------------------------------------------------------------------------


def test_function_key_security_with_anonymous_exceptions(document):
    schemes = document["components"]["securitySchemes"]
    assert schemes["functionKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-functions-key",
        "description": schemes["functionKey"]["description"],
    }
    assert (schemes["functionKeyQuery"]["in"], schemes["functionKeyQuery"]["name"]) == (
        "query",
        "code",
    )
    for requirement in document["security"]:
        assert set(requirement) <= set(schemes)
    for path, method, op in operations(document):
        if (path, method) in ANONYMOUS:
            assert op["security"] == [], (path, method)
        else:
            assert "security" not in op, (path, method)  # inherits the function key
            assert "401" in op["responses"], (path, method)


# --- the quote operation -------------------------------------------------------------------------


def test_submit_quote_documents_every_status(document):
    op = document["paths"]["/api/quotes"]["post"]
    assert set(op["responses"]) == {"202", "400", "401", "409", "413", "415", "422", "500"}
    accepted = op["responses"]["202"]
    assert "Location" in accepted["headers"]
    assert accepted["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/QuoteAccepted"
    }
    for status in ("400", "409", "413", "415", "422", "500"):
        response = deref(document, op["responses"][status])
        assert list(response["content"]) == ["application/problem+json"], status
        assert response["content"]["application/problem+json"]["schema"] == {
            "$ref": "#/components/schemas/Problem"
        }
    conflict = op["responses"]["409"]["content"]["application/problem+json"]["examples"]
    assert all("currentRevision" in ex["value"] for ex in conflict.values())


def test_pricing_requires_since_as_a_date_time(document):
    params = {
        p["name"]: p
        for p in (
            deref(document, q) for q in document["paths"]["/api/pricing"]["get"]["parameters"]
        )
    }
    assert params["since"]["required"] is True
    assert params["since"]["schema"] == {"type": "string", "format": "date-time"}
    assert params["continuationToken"]["required"] is False


def test_availability_documents_503_with_retry_after(document):
    responses = document["paths"]["/api/products/{sku}/availability"]["get"]["responses"]
    unavailable = deref(document, responses["503"])
    assert "Retry-After" in unavailable["headers"]
    resolve(document, unavailable["headers"]["Retry-After"]["$ref"])


def test_the_dashboard_is_html(document):
    content = document["paths"]["/api/dashboard"]["get"]["responses"]["200"]["content"]
    assert list(content) == ["text/html"]


# --- schemas come from the models ----------------------------------------------------------------


def test_schemas_are_the_models_camel_case_and_closed(document):
    schemas = document["components"]["schemas"]
    for name in (
        "Quote",
        "QuoteLine",
        "Address",
        "Configuration",
        "QuoteAccepted",
        "QuoteStatus",
        "ForecastBatch",
        "ForecastSubmission",
        "ForecastAccepted",
        "PriceListEntry",
        "PricingPage",
        "Availability",
        "ArchiveLine",
        "ArchiveResult",
        "Problem",
        "FieldError",
        "Health",
    ):
        assert name in schemas, name
    quote = schemas["Quote"]
    assert quote["additionalProperties"] is False
    assert set(quote["properties"]) == {field.alias for field in Quote.model_fields.values()}
    assert "quoteId" in quote["required"]
    assert "notes" not in quote["required"]
    assert quote["properties"]["revision"]["type"] == "integer"
    line = schemas["QuoteLine"]["properties"]
    assert line["unitPrice"]["type"] == "string"
    assert {branch["type"] for branch in line["quantity"]["anyOf"]} == {"number", "string"}
    assert schemas["Configuration"]["maxProperties"] == 64
    assert schemas["Problem"]["additionalProperties"] is True


EXAMPLES = [
    ("EXAMPLE_QUOTE", Quote, True),
    ("EXAMPLE_FORECAST_BATCH", ForecastBatch, True),
    ("EXAMPLE_QUOTE_ACCEPTED", QuoteAccepted, False),
    ("EXAMPLE_QUOTE_STATUS", QuoteStatus, False),
    ("EXAMPLE_FORECAST_ACCEPTED", ForecastAccepted, False),
    ("EXAMPLE_PRICING_PAGE", PricingPage, False),
    ("EXAMPLE_AVAILABILITY", Availability, False),
    ("EXAMPLE_ARCHIVE_RESULT", ArchiveResult, False),
    ("EXAMPLE_HEALTH", Health, False),
    ("EXAMPLE_NOT_READY", Health, False),
]


@pytest.mark.parametrize(("name", "model", "request_body"), EXAMPLES)
def test_every_example_is_valid_for_its_model(name, model, request_body):
    # Given an example from the document, as JSON on the wire
    example = getattr(openapi, name)
    raw = json.dumps(example).encode()
    # Then the model accepts it (requests through the strict request path)
    if request_body:
        validate(model, loads(raw))
    else:
        model.model_validate(loads(raw))


def test_archive_and_problem_examples_are_valid():
    for line in openapi.EXAMPLE_ARCHIVE_LINES:
        validate(ArchiveLine, loads(json.dumps(line).encode()))
    for example in openapi.EXAMPLE_PROBLEMS.values():
        Problem.model_validate(example)


def test_examples_in_the_document_are_the_validated_ones(document):
    body = document["paths"]["/api/quotes"]["post"]["requestBody"]["content"]["application/json"]
    assert body["example"] == openapi.EXAMPLE_QUOTE
    ndjson = document["paths"]["/api/quotes/archive"]["post"]["requestBody"]["content"]
    lines = ndjson["application/x-ndjson"]["example"].splitlines()
    assert [json.loads(line) for line in lines] == list(openapi.EXAMPLE_ARCHIVE_LINES)


def test_the_server_url_can_be_set():
    assert openapi.build_openapi("https://hub.contoso.example")["servers"] == [
        {"url": "https://hub.contoso.example"}
    ]
