"""The operations dashboard: ``GET /api/dashboard`` and the ``dashboard_snapshot`` timer.

The page is one self-contained HTML document (inline CSS and SVG, no script, no external asset).
Its gold figures come from a JSON snapshot the timer writes; the HTTP function reads only that
blob and the light Azure Tables, so it never loads deltalake, pyarrow or polars.
"""

from __future__ import annotations

import logging

import azure.functions as func

from blueprints._http import guarded
from shared import wiring

bp = func.Blueprint()  # type: ignore[no-untyped-call]
log = logging.getLogger(__name__)

# The page is built from live state; a cached copy would show stale job status. The policy
# forbids every fetch (no script or asset may load), and framing is refused.
_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}


@bp.function_name("dashboard")
@bp.route(route="dashboard", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@guarded
def dashboard(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/dashboard: job status, rejections, reconciliation parity and gold KPIs."""
    return func.HttpResponse(
        wiring.dashboard().html(),
        status_code=200,
        headers={"Content-Type": "text/html; charset=utf-8", **_HEADERS},
    )


@bp.function_name("dashboard_snapshot")
@bp.timer_trigger(arg_name="timer", schedule="%DASHBOARD_SNAPSHOT_SCHEDULE%", run_on_startup=False)
def dashboard_snapshot(timer: func.TimerRequest) -> None:
    """Write the gold figures the dashboard shows to ``gold/dashboard/snapshot.json``."""
    if timer.past_due:
        log.warning("dashboard_snapshot: running late (past due)")
    taken = wiring.dashboard().snapshot()
    log.info("dashboard snapshot taken at %s", taken.taken_at)
