"""Flow 1b: rep forecasts from the Quoting Tool, and the lake job that brings the Quoting Tool's
bronze entities (forecasts, the quote archive) into silver."""

from __future__ import annotations

import logging
from dataclasses import asdict

import azure.functions as func

from blueprints._http import guarded, json_response, problem_response
from shared import wiring
from shared.jsonbody import BodyError, parse_json_body, validate
from shared.models.common import MAX_BODY_BYTES
from shared.models.forecast import ForecastBatch
from shared.services.forecasts import ingest_quoting_tool

bp = func.Blueprint()  # type: ignore[no-untyped-call]
log = logging.getLogger(__name__)


@bp.function_name("forecast_intake")
@bp.route(route="forecasts", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@guarded
def forecast_intake(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/forecasts: validate the whole batch, store it in bronze once, answer 202."""
    try:
        body = parse_json_body(
            req.get_body(), req.headers.get("content-type"), max_bytes=MAX_BODY_BYTES
        )
        batch = validate(ForecastBatch, body)
    except BodyError as exc:
        return problem_response(exc.problem)
    accepted = wiring.forecast_intake().accept(batch)
    return json_response(accepted.model_dump(mode="json", by_alias=True), 202)


@bp.function_name("lake_ingest")
@bp.timer_trigger(arg_name="timer", schedule="%LAKE_INGEST_SCHEDULE%", run_on_startup=False)
def lake_ingest(timer: func.TimerRequest) -> None:
    """MERGE new Quoting Tool bronze pages (forecasts, archive) into silver; watermark-driven."""
    results = ingest_quoting_tool(wiring.lake(), wiring.watermarks())
    log.info("lake_ingest: %s", [asdict(r) for r in results])
