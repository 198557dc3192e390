"""Operations: liveness and readiness for load balancers, probes and operators."""

from __future__ import annotations

import datetime as dt

import azure.functions as func

from blueprints._http import guarded, json_response
from shared.config import get_settings
from shared.errors import SettingsError

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@guarded
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Liveness always; with ?ready=1 also readiness (settings valid, storage and Service Bus
    configured). Names problems, never values."""
    now = dt.datetime.now(dt.UTC).isoformat()
    if req.params.get("ready") not in ("1", "true"):
        return json_response({"status": "alive", "time": now})
    checks: dict[str, dict[str, object]] = {}
    try:
        settings = get_settings()
    except SettingsError as exc:
        checks["settings"] = {"ok": False, "detail": str(exc)}
    else:
        checks["settings"] = {"ok": True}
        checks["storage"] = {"ok": settings.storage_configured()}
        checks["serviceBus"] = {"ok": settings.service_bus_configured()}
    ready = all(bool(c["ok"]) for c in checks.values())
    return json_response(
        {"status": "ready" if ready else "not-ready", "time": now, "checks": checks},
        status=200 if ready else 503,
    )


@bp.function_name("openapi")
@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@guarded
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/openapi.json: the OpenAPI 3.1 document, built once per process from the models."""
    from shared.openapi import openapi_json

    return func.HttpResponse(
        openapi_json(),
        status_code=200,
        mimetype="application/json",
        # The document changes only with a deployment; clients and proxies may keep it briefly.
        headers={"Cache-Control": "public, max-age=300"},
    )
