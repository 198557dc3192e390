"""GET /api/openapi.json served by the running app, checked against the functions the real
Python worker indexes from function_app.py."""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

from tests.indexing.checks import ROOT, index

pytestmark = pytest.mark.integration

_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def _served(world, http):
    # No function key: the document is public, like /api/health.
    response = http.get(f"{world.hub.base_url}/api/openapi.json")
    assert response.status_code == 200, response.text
    return response


def test_document_is_served_without_a_key_as_json(world, hub_http):
    # Given the running app
    # When the document is requested anonymously
    response = _served(world, hub_http)
    # Then it is JSON, carries a correlation id, and may be cached briefly
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["x-correlation-id"]
    assert "max-age" in response.headers["Cache-Control"]
    assert response.json()["openapi"] == "3.1.0"


def test_served_document_passes_the_openapi_3_1_validator(world, hub_http):
    # Given the served document (not the in-process builder: what clients actually get)
    document = _served(world, hub_http).json()
    # When openapi-spec-validator checks it against the OAS 3.1 schema and resolves every $ref
    # Then it raises nothing
    validate(document)


def test_document_describes_every_http_route_the_worker_indexes(world, hub_http):
    # Given the HTTP functions the real worker indexes from function_app.py
    indexed = index(ROOT)
    assert "error" not in indexed, indexed.get("error")
    routes = set()
    for function in indexed["functions"]:
        trigger = next(b for b in function["bindings"] if str(b["type"]).endswith("Trigger"))
        if trigger["type"] != "httpTrigger":
            continue
        # Route constraints ({id:int}) are not part of an OpenAPI path template.
        path = "/api/" + re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", trigger["route"])
        for method in trigger["methods"]:
            routes.add((path, str(method).lower()))
    # When the served document is read
    document = _served(world, hub_http).json()
    described = {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in _METHODS
    }
    # Then every route the app really has is described (the document may describe more, such
    # as the dashboard, which another flow ships)
    assert routes, "the worker indexed no HTTP function"
    assert routes - described == set()
