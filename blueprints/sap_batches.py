"""The SAP batches' timers: flow 10 (SAP → hub → Dataverse) and flow 11 (Dataverse → SAP).

Thin on purpose: each timer asks ``shared.wiring`` for its batch, runs it once and logs the
one-line summary. A failure is not caught: it reaches the host, which records the invocation as
failed; the batch has moved no watermark or delta token past unfinished work.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared import wiring

bp = func.Blueprint()  # type: ignore[no-untyped-call]
log = logging.getLogger(__name__)


@bp.function_name("sap_inbound")
@bp.timer_trigger(arg_name="timer", schedule="%SAP_INBOUND_SCHEDULE%", run_on_startup=False)
def sap_inbound(timer: func.TimerRequest) -> None:
    """Flow 10: SAP orders, items, partners and assets changed since the watermark into the
    lake and Dataverse; quotes that became orders move to "ordered"."""
    if timer.past_due:
        log.warning("sap_inbound: running late (past due)")
    log.info("%s", wiring.sap_inbound().run().summary())


@bp.function_name("sap_outbound")
@bp.timer_trigger(arg_name="timer", schedule="%SAP_OUTBOUND_SCHEDULE%", run_on_startup=False)
def sap_outbound(timer: func.TimerRequest) -> None:
    """Flow 11: order confirmations and changes made in Sales back to SAP (echoes suppressed,
    price changes from Sales refused)."""
    if timer.past_due:
        log.warning("sap_outbound: running late (past due)")
    log.info("%s", wiring.sap_outbound().run().summary())
