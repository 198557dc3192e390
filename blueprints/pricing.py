"""Flow 1b toward the Quoting Tool: approved prices from Dynamics 365 Sales and real-time
availability from SAP. Both are read-only for the partner."""

from __future__ import annotations

import datetime as dt
import logging
import re

import azure.functions as func
from pydantic import TypeAdapter, ValidationError

from blueprints._http import guarded, json_response, problem_response
from shared import wiring
from shared.errors import TransientError
from shared.models.common import SKU_PATTERN, Timestamp
from shared.problem import problem
from shared.services.pricing import InvalidToken

bp = func.Blueprint()  # type: ignore[no-untyped-call]
log = logging.getLogger(__name__)

_TIMESTAMP: TypeAdapter[dt.datetime] = TypeAdapter(Timestamp)
_SKU = re.compile(SKU_PATTERN)
_MAX_SKU_CHARS = 40
DEFAULT_RETRY_AFTER = 30


def bad_parameter(name: str, reason: str) -> func.HttpResponse:
    """400 naming the query or path parameter and why it was refused (RFC 9457 §3's
    ``invalid-params`` extension, camelCased like the rest of the wire)."""
    return problem_response(
        problem(
            400,
            "Bad request",
            f"{name} {reason}",
            kind="bad-request",
            invalidParams=[{"name": name, "reason": reason}],
        )
    )


def unavailable(detail: str, retry_after: float | None) -> func.HttpResponse:
    """503 with ``Retry-After`` (whole seconds, at least 1)."""
    seconds = max(1, int(retry_after + 0.999)) if retry_after is not None else DEFAULT_RETRY_AFTER
    return problem_response(
        problem(503, "Service unavailable", detail, kind="unavailable"),
        {"Retry-After": str(seconds)},
    )


@bp.function_name("pricing")
@bp.route(route="pricing", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@guarded
def pricing(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/pricing?since=<RFC 3339>&continuationToken=: approved, changed entries, paged."""
    raw_since = req.params.get("since")
    if not raw_since:
        return bad_parameter("since", "is required: an RFC 3339 date-time with an offset.")
    try:
        since = _TIMESTAMP.validate_python(raw_since)
    except ValidationError:
        hint = " (a '+' in a query string must be sent as %2B)" if " " in raw_since else ""
        return bad_parameter(
            "since",
            f"must be an RFC 3339 date-time with an offset, e.g. 2026-05-01T00:00:00Z{hint}.",
        )
    try:
        # 0001-01-01T00:00:00+01:00 is valid RFC 3339 but has no UTC equivalent in Python.
        since = since.astimezone(dt.UTC)
    except OverflowError:
        return bad_parameter("since", "is out of range once converted to UTC.")
    token = req.params.get("continuationToken")
    try:
        page = wiring.pricing_feed().page(since, token)
    except InvalidToken as exc:
        return bad_parameter("continuationToken", f"is not valid here: {exc}.")
    except TransientError as exc:
        log.warning("pricing: Dataverse unavailable: %s", exc)
        return unavailable("Dynamics 365 Sales did not answer; try again later.", exc.retry_after)
    return json_response(page.model_dump(mode="json", by_alias=True, exclude_none=True))


@bp.function_name("product_availability")
@bp.route(route="products/{sku}/availability", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@guarded
def product_availability(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/products/{sku}/availability: stock per plant from SAP, or the last known."""
    sku = req.route_params.get("sku", "")
    if len(sku) > _MAX_SKU_CHARS or _SKU.fullmatch(sku) is None:
        return bad_parameter(
            "sku",
            "must be 1-40 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit.",
        )
    answer = wiring.availability().lookup(sku)
    if answer.outcome == "not-found":
        return problem_response(
            problem(404, "Not found", "SAP knows no product with this SKU.", kind="not-found")
        )
    if answer.outcome == "unavailable" or answer.availability is None:
        return unavailable(
            "SAP did not answer and the hub holds no earlier figures for this product.",
            answer.retry_after,
        )
    return json_response(answer.availability.model_dump(mode="json", by_alias=True))
