"""Reconciliation on a daily timer (also ``python -m shared.cli reconcile``)."""

from __future__ import annotations

import logging

import azure.functions as func

from shared import wiring

bp = func.Blueprint()  # type: ignore[no-untyped-call]
log = logging.getLogger(__name__)


@bp.function_name("reconcile")
@bp.timer_trigger(arg_name="timer", schedule="%RECONCILE_SCHEDULE%", run_on_startup=False)
def reconcile(timer: func.TimerRequest) -> None:
    """Compare counts and content hashes across the systems; drift goes to gold."""
    report = wiring.reconciler().run()
    log.info("reconcile: %d drift(s), skipped %s", len(report.drift), report.skipped)
