"""Flow 1a and the quote steps of the sequence: quote intake, the push to Dataverse, the
qualification flag back to the Quoting Tool, and quote status."""

from __future__ import annotations

import json
import logging

import azure.functions as func

from blueprints._http import guarded, json_response, problem_response
from shared import wiring
from shared.jsonbody import BodyError, parse_json_body, validate
from shared.models.quote import Quote
from shared.problem import problem

bp = func.Blueprint()  # type: ignore[no-untyped-call]
log = logging.getLogger(__name__)

MAX_QUOTE_BYTES = 1024 * 1024


@bp.function_name("quote_intake")
@bp.route(route="quotes", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.service_bus_queue_output(
    arg_name="push", queue_name="%QUOTES_QUEUE_NAME%", connection="ServiceBusConnection"
)
@guarded
def quote_intake(req: func.HttpRequest, push: func.Out[str]) -> func.HttpResponse:
    """POST /api/quotes: validate, assign territory, bronze, enqueue, answer 202."""
    try:
        raw = req.get_body()
        body = parse_json_body(raw, req.headers.get("content-type"), max_bytes=MAX_QUOTE_BYTES)
        quote = validate(Quote, body)
    except BodyError as exc:
        return problem_response(exc.problem)
    outcome = wiring.quote_flow().ingest_quote(quote, raw.decode("utf-8"))
    if outcome.message is not None:
        push.set(json.dumps(outcome.message))
    if outcome.status >= 400:
        return problem_response(outcome.body, outcome.headers)
    return json_response(outcome.body, outcome.status, outcome.headers)


@bp.function_name("quote_status")
@bp.route(route="quotes/{quoteId}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@guarded
def quote_status(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/quotes/{quoteId}: lifecycle, Dataverse id, approved prices, SAP order."""
    quote_id = req.route_params.get("quoteId", "")
    status = wiring.quote_flow().quote_status(quote_id)
    if status is None:
        return problem_response(
            problem(404, "Not found", "No quote with this id has been received.", kind="not-found")
        )
    return json_response(status)


@bp.function_name("quote_push")
@bp.service_bus_queue_trigger(
    arg_name="msg", queue_name="%QUOTES_QUEUE_NAME%", connection="ServiceBusConnection"
)
def quote_push(msg: func.ServiceBusMessage) -> None:
    """Push an accepted quote revision to Dataverse. Permanent failures are recorded as
    rejected and the message completes; transient ones raise, so Service Bus redelivers."""
    wiring.quote_flow().push_quote(
        msg.get_body(),
        message_id=msg.message_id or "",
        delivery_count=int(msg.delivery_count or 1),
    )


@bp.function_name("quote_qualification")
@bp.timer_trigger(arg_name="timer", schedule="%DATAVERSE_CHANGES_SCHEDULE%", run_on_startup=False)
def quote_qualification(timer: func.TimerRequest) -> None:
    """Dataverse change tracking on quotes: send the qualified flag to the Quoting Tool."""
    result = wiring.quote_flow().track_qualification()
    log.info("qualification: %s", result)
