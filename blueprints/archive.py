"""Flows 3 and 4: closed quotes and finished jobs uploaded as NDJSON for long-term storage."""

from __future__ import annotations

import azure.functions as func

from blueprints._http import guarded, json_response, problem_response
from shared import wiring
from shared.jsonbody import BodyError, media_type, too_large, unsupported_media_type
from shared.models.common import MAX_ARCHIVE_BYTES
from shared.services.archive import NDJSON_MEDIA_TYPE

bp = func.Blueprint()  # type: ignore[no-untyped-call]


def _is_ndjson(content_type: str | None) -> bool:
    essence, params = media_type(content_type)
    return essence == NDJSON_MEDIA_TYPE and params.get("charset", "utf-8").lower() == "utf-8"


@bp.function_name("archive_import")
@bp.route(route="quotes/archive", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@guarded
def archive_import(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/quotes/archive: NDJSON of archived quotes and jobs; 200 with per-line errors."""
    if not _is_ndjson(req.headers.get("content-type")):
        return problem_response(unsupported_media_type(NDJSON_MEDIA_TYPE).problem)
    # The host hands the whole body over (and refuses more than 100 MiB itself); read it once.
    raw = req.get_body()
    if len(raw) > MAX_ARCHIVE_BYTES:
        return problem_response(too_large(len(raw), MAX_ARCHIVE_BYTES).problem)
    try:
        result = wiring.archive_import().import_ndjson(raw)
    except BodyError as exc:
        return problem_response(exc.problem)
    return json_response(result.model_dump(mode="json", by_alias=True))
