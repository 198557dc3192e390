"""The OpenAPI 3.1 description of the hub's Quoting Tool API, generated from the wire models.

Schemas come from the same pydantic models that validate requests, so the document cannot drift
from the code: request bodies use each model's validation schema, responses its serialization
schema. ``openapi_json()`` is what ``GET /api/openapi.json`` serves.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Final, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.models import (
    MAX_ARCHIVE_BYTES,
    MAX_BODY_BYTES,
    MAX_CONFIGURATION_KEYS,
    MAX_FORECAST_SUBMISSIONS,
    MAX_NOTES_CHARS,
    MAX_QUOTE_LINES,
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
from shared.models.common import IDENTIFIER_PATTERN, SKU_PATTERN
from shared.models.pricing import MAX_CONTINUATION_TOKEN_CHARS
from shared.problem import PROBLEM_CONTENT_TYPE

OPENAPI_VERSION: Final = "3.1.0"
API_VERSION: Final = "1.0.0"
JSON: Final = "application/json"
NDJSON: Final = "application/x-ndjson"
_PROBLEM_BASE: Final = "https://contoso.example/problems/"

_MODELS: Final[tuple[tuple[type[BaseModel], Literal["validation", "serialization"]], ...]] = (
    (Quote, "validation"),
    (ForecastBatch, "validation"),
    (ArchiveLine, "validation"),
    (QuoteAccepted, "serialization"),
    (QuoteStatus, "serialization"),
    (ForecastAccepted, "serialization"),
    (PricingPage, "serialization"),
    (Availability, "serialization"),
    (ArchiveResult, "serialization"),
    (Problem, "serialization"),
    (Health, "serialization"),
)

# --- examples (tests validate every one against its model) -------------------------------------

EXAMPLE_QUOTE: Final[dict[str, Any]] = {
    "quoteId": "Q-2026-000123",
    "revision": 3,
    "accountNumber": "ACC-10042",
    "salesRep": "jane.doe@contoso.com",
    "currency": "USD",
    "expectedCloseDate": "2026-06-30",
    "probability": "0.6",
    "shipTo": {
        "street": "100 Industrial Way",
        "city": "Springfield",
        "county": "Sangamon",
        "region": "IL",
        "postalCode": "62701",
        "country": "US",
    },
    "lines": [
        {
            "lineNumber": 1,
            "sku": "RTU-050-460",
            "description": "5-ton packaged rooftop unit",
            "quantity": 2,
            "unitPrice": "8450.00",
            "discountPct": 5,
            "configuration": {
                "tonnage": 5,
                "voltage": "460V",
                "refrigerant": "R-454B",
                "options": ["ECON", "HGRH"],
                "coilCoating": "epoxy",
            },
        },
        {"lineNumber": 2, "sku": "SVC-INSTALL", "quantity": 1, "unitPrice": "1200.00"},
    ],
    "notes": "Deliver to loading dock B.",
    "modifiedAt": "2026-05-19T09:30:00Z",
}

EXAMPLE_QUOTE_ACCEPTED: Final[dict[str, Any]] = {
    "quoteId": "Q-2026-000123",
    "revision": 3,
    "status": "received",
    "trackingId": "3f2a7c1e9b8d4e0fa1c2b3d4e5f60718",
}

EXAMPLE_QUOTE_STATUS: Final[dict[str, Any]] = {
    "quoteId": "Q-2026-000123",
    "currentRevision": 3,
    "status": "ordered",
    "steps": [
        {"step": "received", "at": "2026-05-19T09:30:02Z", "revision": 3},
        {"step": "inDataverse", "at": "2026-05-19T09:30:05Z", "revision": 3},
        {"step": "qualified", "at": "2026-05-20T14:02:11Z", "revision": 3},
        {"step": "ordered", "at": "2026-05-21T08:15:40Z", "revision": 3},
    ],
    "dataverseId": "6f1c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f",
    "approvedLines": [
        {"lineNumber": 1, "approvedUnitPrice": "8450.00", "approvedDiscountPct": "7.5"},
        {"lineNumber": 2, "approvedUnitPrice": "1200.00", "approvedDiscountPct": "0"},
    ],
    "sapOrderNumber": "4500012345",
}

EXAMPLE_FORECAST_BATCH: Final[dict[str, Any]] = {
    "submissions": [
        {
            "salesRep": "jane.doe@contoso.com",
            "territory": "US-Midwest",
            "month": "2026-06",
            "amount": "125000.00",
            "probability": "0.7",
            "category": "Committed",
        },
        {
            "salesRep": "jane.doe@contoso.com",
            "territory": "US-Midwest",
            "month": "2026-06",
            "amount": 40000,
            "probability": "0.3",
            "category": "BestCase",
        },
    ]
}

EXAMPLE_FORECAST_ACCEPTED: Final[dict[str, Any]] = {
    "batchId": "b7e4c0d2a9f14c53",
    "accepted": 2,
    "status": "accepted",
}

EXAMPLE_PRICING_PAGE: Final[dict[str, Any]] = {
    "items": [
        {
            "sku": "RTU-050-460",
            "priceList": "US Distributor 2026",
            "currency": "USD",
            "amount": "8450.0000",
            "approvedOn": "2026-05-02T16:20:00Z",
            "approvedBy": "Pricing Desk",
            "modifiedOn": "2026-05-02T16:20:03Z",
        }
    ],
    "continuationToken": "eyJhZnRlciI6IjIwMjYtMDUtMDJUMTY6MjA6MDNaIn0",
}

EXAMPLE_AVAILABILITY: Final[dict[str, Any]] = {
    "sku": "RTU-050-460",
    "plants": [
        {"plant": "1010", "available": "14.000", "unit": "EA"},
        {"plant": "1020", "available": "0.000", "unit": "EA"},
    ],
    "asOf": "2026-05-19T09:29:41Z",
    "stale": False,
    "source": "SAP",
}

EXAMPLE_ARCHIVE_LINES: Final[tuple[dict[str, Any], ...]] = (
    {
        "recordType": "quote",
        "quoteId": "Q-2019-004411",
        "accountNumber": "ACC-10042",
        "closedOn": "2019-11-30",
        "amount": "18250.00",
        "currency": "USD",
        "status": "won",
        "sourceSystem": "legacy-quoting",
    },
    {
        "recordType": "job",
        "quoteId": "Q-2019-004411",
        "jobId": "J-88120",
        "accountNumber": "ACC-10042",
        "closedOn": "2020-02-14",
        "amount": "18250.00",
        "currency": "USD",
        "status": "completed",
    },
)

EXAMPLE_ARCHIVE_RESULT: Final[dict[str, Any]] = {
    "received": 3,
    "accepted": 2,
    "rejected": 1,
    "errors": [
        {
            "line": 3,
            "errors": [
                {
                    "pointer": "/jobId",
                    "detail": "jobId is required for a job record",
                    "code": "missing",
                }
            ],
        }
    ],
    "errorsTruncated": False,
}

EXAMPLE_HEALTH: Final[dict[str, Any]] = {"status": "alive", "time": "2026-05-19T09:30:00+00:00"}
EXAMPLE_NOT_READY: Final[dict[str, Any]] = {
    "status": "not-ready",
    "time": "2026-05-19T09:30:00+00:00",
    "checks": {
        "settings": {"ok": True},
        "storage": {"ok": True},
        "serviceBus": {"ok": False},
    },
}


def _problem_example(
    status: int, title: str, detail: str, kind: str, **extensions: Any
) -> dict[str, Any]:
    return {
        "type": _PROBLEM_BASE + kind,
        "title": title,
        "status": status,
        "detail": detail,
        **extensions,
    }


EXAMPLE_PROBLEMS: Final[dict[str, dict[str, Any]]] = {
    "malformedJson": _problem_example(
        400,
        "Malformed JSON",
        'duplicate object key "revision"; every key must appear once',
        "malformed-json",
    ),
    "badParameter": _problem_example(
        400,
        "Bad request",
        "since is required: an RFC 3339 date-time with an offset.",
        "bad-request",
    ),
    "tooLarge": _problem_example(
        413,
        "Content too large",
        f"The request body is 1500000 bytes; the limit is {MAX_BODY_BYTES} bytes.",
        "content-too-large",
        maxBytes=MAX_BODY_BYTES,
    ),
    "unsupportedMediaType": _problem_example(
        415,
        "Unsupported media type",
        "The request body must be application/json; charset, if given, must be utf-8.",
        "unsupported-media-type",
    ),
    "validation": _problem_example(
        422,
        "Validation failed",
        "2 field(s) failed validation",
        "validation",
        errors=[
            {
                "pointer": "/lines/3/lineNumber",
                "detail": "lineNumber should be unique within the quote; an earlier line uses it",
                "code": "line_number_duplicate",
            },
            {
                "pointer": "/currency",
                "detail": "Input should be an active ISO 4217 currency code in upper case, such as USD",
                "code": "currency_code",
            },
        ],
    ),
    "staleRevision": _problem_example(
        409,
        "Stale revision",
        "A later revision of this quote has already been accepted.",
        "stale-revision",
        currentRevision=4,
    ),
    "revisionConflict": _problem_example(
        409,
        "Revision conflict",
        "This revision of the quote was already accepted with different content; "
        "send a new revision.",
        "revision-conflict",
        currentRevision=3,
    ),
    "notFound": _problem_example(
        404, "Not found", "No quote with this id has been received.", "not-found"
    ),
    "unavailable": _problem_example(
        503,
        "Service unavailable",
        "SAP did not answer and the hub holds no earlier figures for this product.",
        "unavailable",
    ),
    "internal": _problem_example(
        500,
        "Internal error",
        "The request failed unexpectedly; quote the correlation id to support.",
        "internal",
        correlationId="0f8e2d4c6b9a41d3a5e7c9b1d3f5a7c9",
    ),
}


# --- building blocks ----------------------------------------------------------------------------


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _headers(**extra: dict[str, Any]) -> dict[str, Any]:
    return {"x-correlation-id": _ref("headers", "CorrelationId"), **extra}


def _json_response(
    description: str,
    schema: str,
    example: dict[str, Any],
    *,
    headers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "description": description,
        "headers": headers or _headers(),
        "content": {JSON: {"schema": _ref("schemas", schema), "example": example}},
    }


def _problem_response(
    description: str, *examples: str, headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "description": description,
        "headers": headers or _headers(),
        "content": {
            PROBLEM_CONTENT_TYPE: {
                "schema": _ref("schemas", "Problem"),
                "examples": {name: {"value": EXAMPLE_PROBLEMS[name]} for name in examples},
            }
        },
    }


def _json_body(schema: str, example: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "required": True,
        "description": description,
        "content": {JSON: {"schema": _ref("schemas", schema), "example": example}},
    }


def _shared_responses() -> dict[str, Any]:
    return {
        "BadRequest": _problem_response(
            "The body is not strict JSON (invalid UTF-8, a byte order mark, duplicate keys, "
            "NaN/Infinity, nesting deeper than 64, trailing data) or a parameter is malformed.",
            "malformedJson",
            "badParameter",
        ),
        "Unauthorized": {
            "description": "Missing or invalid function key. Answered by the Azure Functions "
            "host before the hub runs: not a problem document (the body is normally empty)."
        },
        "NotFound": _problem_response("No such resource.", "notFound"),
        "PayloadTooLarge": _problem_response("The body exceeds the size limit.", "tooLarge"),
        "UnsupportedMediaType": _problem_response(
            "The Content-Type is not the one this operation accepts.", "unsupportedMediaType"
        ),
        "ValidationFailed": _problem_response(
            "The body is JSON but breaks the schema. ``errors`` lists every failing field with "
            "a JSON pointer (at most 1000; ``errorsOmitted`` counts the rest). Submitted values "
            "are never echoed.",
            "validation",
        ),
        "InternalError": _problem_response(
            "An unexpected failure. Quote ``correlationId`` to support; retrying is safe.",
            "internal",
        ),
        "ServiceUnavailable": _problem_response(
            "A system the hub depends on is unavailable; retry after the given delay.",
            "unavailable",
            headers=_headers(**{"Retry-After": _ref("headers", "RetryAfter")}),
        ),
    }


def _write_responses(success: dict[str, Any], *, json_body: bool = True) -> dict[str, Any]:
    responses: dict[str, Any] = dict(success)
    responses.update(
        {
            "400": _ref("responses", "BadRequest"),
            "401": _ref("responses", "Unauthorized"),
            "413": _ref("responses", "PayloadTooLarge"),
            "415": _ref("responses", "UnsupportedMediaType"),
            "500": _ref("responses", "InternalError"),
        }
    )
    if json_body:
        responses["422"] = _ref("responses", "ValidationFailed")
    return dict(sorted(responses.items()))


def _read_responses(success: dict[str, Any], *extra: str) -> dict[str, Any]:
    responses: dict[str, Any] = dict(success)
    responses["401"] = _ref("responses", "Unauthorized")
    responses["500"] = _ref("responses", "InternalError")
    names = {
        "400": "BadRequest",
        "404": "NotFound",
        "503": "ServiceUnavailable",
    }
    for status in extra:
        responses[status] = _ref("responses", names[status])
    return dict(sorted(responses.items()))


def _paths() -> dict[str, Any]:
    correlation = _ref("parameters", "CorrelationIdRequest")
    quote_id = {
        "name": "quoteId",
        "in": "path",
        "required": True,
        "description": "The Quoting Tool's id of the quote.",
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": 40,
            "pattern": IDENTIFIER_PATTERN,
        },
    }
    sku = {
        "name": "sku",
        "in": "path",
        "required": True,
        "description": "The product's SKU.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 40, "pattern": SKU_PATTERN},
    }
    archive_example = "\n".join(json.dumps(line) for line in EXAMPLE_ARCHIVE_LINES) + "\n"
    anonymous: list[dict[str, list[str]]] = []
    return {
        "/api/quotes": {
            "post": {
                "operationId": "submitQuote",
                "tags": ["quotes"],
                "summary": "Submit a quote (or a new revision of one)",
                "description": (
                    "Accepts the quote for processing and answers 202 at once. Idempotent by "
                    "``(quoteId, revision)``: the exact same body again gets the same 202; the "
                    "same revision with different content gets 409 ``revision-conflict``; a "
                    "revision lower than the one accepted gets 409 ``stale-revision`` with "
                    "``currentRevision``. The body is at most 1 MiB, with at most "
                    f"{MAX_QUOTE_LINES} lines, {MAX_CONFIGURATION_KEYS} configuration keys per "
                    f"line and {MAX_NOTES_CHARS} characters of notes."
                ),
                "parameters": [correlation],
                "requestBody": _json_body("Quote", EXAMPLE_QUOTE, "The quote."),
                "responses": _write_responses(
                    {
                        "202": _json_response(
                            "Accepted for processing. ``Location`` is the quote's status.",
                            "QuoteAccepted",
                            EXAMPLE_QUOTE_ACCEPTED,
                            headers=_headers(
                                Location={
                                    "description": "The quote's status resource, "
                                    "``/api/quotes/{quoteId}``.",
                                    "schema": {"type": "string", "format": "uri-reference"},
                                }
                            ),
                        ),
                        "409": _problem_response(
                            "The revision is stale or was accepted with other content; "
                            "``currentRevision`` is the revision the hub holds.",
                            "staleRevision",
                            "revisionConflict",
                        ),
                    }
                ),
            }
        },
        "/api/quotes/{quoteId}": {
            "get": {
                "operationId": "getQuoteStatus",
                "tags": ["quotes"],
                "summary": "Where a quote is: lifecycle, approved prices, SAP order",
                "parameters": [quote_id, correlation],
                "responses": _read_responses(
                    {
                        "200": _json_response(
                            "The quote's status.", "QuoteStatus", EXAMPLE_QUOTE_STATUS
                        )
                    },
                    "400",
                    "404",
                ),
            }
        },
        "/api/quotes/archive": {
            "post": {
                "operationId": "archiveQuotes",
                "tags": ["archive"],
                "summary": "Upload closed quotes and jobs for long-term storage (NDJSON)",
                "description": (
                    "One ``ArchiveLine`` JSON object per line (UTF-8, LF or CRLF line ends; "
                    "blank lines are skipped), at most 100 MiB. Valid lines are stored and "
                    "invalid ones reported by line number; uploading the same lines again is "
                    "harmless (a record is identified by recordType, quoteId and jobId)."
                ),
                "parameters": [correlation],
                "requestBody": {
                    "required": True,
                    "description": "Newline-delimited JSON, one ArchiveLine per line.",
                    "content": {
                        NDJSON: {
                            "schema": {
                                "type": "string",
                                "maxLength": MAX_ARCHIVE_BYTES,
                                "description": "Each non-blank line is one ArchiveLine object.",
                            },
                            "example": archive_example,
                            "x-ndjson-item-schema": _ref("schemas", "ArchiveLine"),
                        }
                    },
                },
                "responses": _write_responses(
                    {
                        "200": _json_response(
                            "The upload was read; ``errors`` lists rejected lines.",
                            "ArchiveResult",
                            EXAMPLE_ARCHIVE_RESULT,
                        )
                    },
                    json_body=False,
                ),
            }
        },
        "/api/pricing": {
            "get": {
                "operationId": "listApprovedPrices",
                "tags": ["pricing"],
                "summary": "Approved price-list entries changed since a time",
                "description": (
                    "Pages through entries whose ``modifiedOn`` is at or after ``since``, "
                    "oldest change first. Follow ``continuationToken`` until it is absent."
                ),
                "parameters": [
                    {
                        "name": "since",
                        "in": "query",
                        "required": True,
                        "description": "RFC 3339 date-time with an offset.",
                        "schema": {"type": "string", "format": "date-time"},
                        "example": "2026-05-01T00:00:00Z",
                    },
                    {
                        "name": "continuationToken",
                        "in": "query",
                        "required": False,
                        "description": "The token from the previous page, unchanged.",
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": MAX_CONTINUATION_TOKEN_CHARS,
                        },
                    },
                    correlation,
                ],
                "responses": _read_responses(
                    {
                        "200": _json_response(
                            "One page of entries.", "PricingPage", EXAMPLE_PRICING_PAGE
                        )
                    },
                    "400",
                    "503",
                ),
            }
        },
        "/api/forecasts": {
            "post": {
                "operationId": "submitForecasts",
                "tags": ["forecasts"],
                "summary": "Submit a batch of sales forecasts",
                "description": (
                    f"1 to {MAX_FORECAST_SUBMISSIONS} submissions, accepted whole or refused "
                    "whole. A submission is identified by (salesRep, territory, month, "
                    "category); sending it again replaces the amount."
                ),
                "parameters": [correlation],
                "requestBody": _json_body(
                    "ForecastBatch", EXAMPLE_FORECAST_BATCH, "The forecast batch."
                ),
                "responses": _write_responses(
                    {
                        "202": _json_response(
                            "Accepted for processing.",
                            "ForecastAccepted",
                            EXAMPLE_FORECAST_ACCEPTED,
                        )
                    }
                ),
            }
        },
        "/api/products/{sku}/availability": {
            "get": {
                "operationId": "getAvailability",
                "tags": ["products"],
                "summary": "Stock availability per plant from SAP",
                "description": (
                    "Read from SAP. When SAP cannot be reached the hub answers with its last "
                    "good figures and ``stale: true``; with none, 503."
                ),
                "parameters": [sku, correlation],
                "responses": _read_responses(
                    {
                        "200": _json_response(
                            "Availability per plant.", "Availability", EXAMPLE_AVAILABILITY
                        )
                    },
                    "400",
                    "404",
                    "503",
                ),
            }
        },
        "/api/health": {
            "get": {
                "operationId": "getHealth",
                "tags": ["operations"],
                "summary": "Liveness, or readiness with ?ready=1",
                "security": anonymous,
                "parameters": [
                    {
                        "name": "ready",
                        "in": "query",
                        "required": False,
                        "description": "``1`` or ``true`` to check readiness too.",
                        "schema": {"type": "string", "enum": ["1", "true"]},
                    },
                    correlation,
                ],
                "responses": {
                    "200": _json_response("Alive (and ready if asked).", "Health", EXAMPLE_HEALTH),
                    "500": _ref("responses", "InternalError"),
                    "503": _json_response(
                        "Not ready; ``checks`` names what failed.", "Health", EXAMPLE_NOT_READY
                    ),
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "tags": ["operations"],
                "summary": "This document",
                "security": anonymous,
                "parameters": [correlation],
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3.1 document.",
                        "headers": _headers(),
                        "content": {JSON: {"schema": {"type": "object"}}},
                    },
                    "500": _ref("responses", "InternalError"),
                },
            }
        },
        "/api/dashboard": {
            "get": {
                "operationId": "getDashboard",
                "tags": ["operations"],
                "summary": "Operational dashboard (HTML)",
                "parameters": [correlation],
                "responses": {
                    "200": {
                        "description": "The dashboard page.",
                        "headers": _headers(),
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                    "401": _ref("responses", "Unauthorized"),
                    "500": _ref("responses", "InternalError"),
                },
            }
        },
    }


def component_schemas() -> dict[str, Any]:
    """JSON Schemas of every model in the API, keyed by model name, with $refs into
    ``#/components/schemas``."""
    _, defs = models_json_schema(
        _MODELS, ref_template="#/components/schemas/{model}", by_alias=True
    )
    schemas: dict[str, Any] = defs.get("$defs", {})
    return dict(sorted(schemas.items()))


def build_openapi(server_url: str = "/") -> dict[str, Any]:
    """The OpenAPI 3.1.0 document of the hub's Quoting Tool API.

    ``server_url`` is the base the paths (which start with ``/api``) are relative to; the
    default ``/`` means the host that served the document.
    """
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Contoso Data Hub: Quoting Tool API",
            "version": API_VERSION,
            "summary": "Quotes, forecasts, pricing and availability between the Quoting Tool "
            "and Contoso's back-office systems.",
            "description": (
                "Errors are RFC 9457 problem details (``application/problem+json``). Amounts "
                'are exact decimals: money travels as JSON strings such as ``"1234.50"``. '
                "Every response carries ``x-correlation-id``; send your own (at most 64 "
                "printable characters) to have it used. See docs/api.md for the full guide."
            ),
        },
        "servers": [{"url": server_url}],
        "security": [{"functionKey": []}, {"functionKeyQuery": []}],
        "tags": [
            {"name": "quotes", "description": "Quotes from the Quoting Tool."},
            {"name": "forecasts", "description": "Sales forecasts."},
            {"name": "pricing", "description": "Approved price lists."},
            {"name": "products", "description": "Product availability."},
            {"name": "archive", "description": "Long-term records of closed quotes and jobs."},
            {"name": "operations", "description": "Health, this document, the dashboard."},
        ],
        "paths": _paths(),
        "components": {
            "schemas": component_schemas(),
            "responses": _shared_responses(),
            "parameters": {
                "CorrelationIdRequest": {
                    "name": "x-correlation-id",
                    "in": "header",
                    "required": False,
                    "description": "Your id for this request (at most 64 printable "
                    "characters); the hub logs it and echoes it back.",
                    "schema": {"type": "string", "maxLength": 64},
                }
            },
            "headers": {
                "CorrelationId": {
                    "description": "The id under which the hub logged this request.",
                    "schema": {"type": "string"},
                },
                "RetryAfter": {
                    "description": "Seconds to wait before retrying.",
                    "schema": {"type": "integer", "minimum": 0},
                },
            },
            "securitySchemes": {
                "functionKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-functions-key",
                    "description": "An Azure Functions function or host key.",
                },
                "functionKeyQuery": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "code",
                    "description": "The same key as a query parameter (avoid: URLs get logged).",
                },
            },
        },
    }


@functools.cache
def openapi_json() -> bytes:
    """The document for the default server, serialised once per process."""
    return json.dumps(build_openapi(), separators=(",", ":"), ensure_ascii=False).encode()
