"""Shared HTTP response mapping for the HTTP-triggered blueprints."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

import azure.functions as func

from shared import log as hub_log
from shared.problem import PROBLEM_CONTENT_TYPE, problem

hub_log.install()
logger = logging.getLogger(__name__)

JSON = "application/json"


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, separators=(",", ":"), default=str),
        status_code=status,
        mimetype=JSON,
        headers=headers,
    )


def problem_response(
    body: dict[str, Any], headers: dict[str, str] | None = None
) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, separators=(",", ":")),
        status_code=int(body["status"]),
        headers={"Content-Type": PROBLEM_CONTENT_TYPE, **(headers or {})},
    )


def guarded(handler: Callable[..., func.HttpResponse]) -> Callable[..., func.HttpResponse]:
    """Run a handler under a correlation id; an unexpected failure becomes a 500 problem
    carrying only that id, never internals. ``functools.wraps`` keeps the handler's signature,
    which the worker matches against the binding names."""

    @functools.wraps(handler)
    def run(req: func.HttpRequest, **bindings: Any) -> func.HttpResponse:
        incoming = req.headers.get("x-correlation-id")
        cid = incoming if incoming and len(incoming) <= 64 and incoming.isprintable() else None
        with hub_log.correlation(cid) as correlation:
            try:
                response = handler(req, **bindings)
            except Exception:
                logger.exception("unhandled failure in %s", getattr(handler, "__name__", "handler"))
                response = problem_response(
                    problem(
                        500,
                        "Internal error",
                        "The request failed unexpectedly; quote the correlation id to support.",
                        kind="internal",
                        correlationId=correlation,
                    )
                )
            response.headers["x-correlation-id"] = correlation
            return response

    return run
