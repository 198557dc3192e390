"""Flow 12: urgent order updates, one session-enabled Service Bus queue each way.

The session id is the order number, so one order's updates are handled one at a time, in order.
Permanent problems are recorded as rejections and the message completes; transient failures
raise, so Service Bus redelivers and, after its maximum delivery count, dead-letters.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared import wiring

bp = func.Blueprint()  # type: ignore[no-untyped-call]
log = logging.getLogger(__name__)


@bp.function_name("urgent_sap_to_dataverse")
@bp.service_bus_queue_trigger(
    arg_name="msg",
    queue_name="%URGENT_SAP_TO_DATAVERSE_QUEUE_NAME%",
    connection="ServiceBusConnection",
    is_sessions_enabled=True,
)
def urgent_sap_to_dataverse(msg: func.ServiceBusMessage) -> None:
    """Apply an urgent SAP order change to the Dataverse order."""
    outcome = wiring.urgent_orders().handle(
        "sap-to-dataverse", msg.get_body(), message_id=msg.message_id or ""
    )
    log.info("urgent sap-to-dataverse %s: %s", outcome.message_id, outcome.result)


@bp.function_name("urgent_dataverse_to_sap")
@bp.service_bus_queue_trigger(
    arg_name="msg",
    queue_name="%URGENT_DATAVERSE_TO_SAP_QUEUE_NAME%",
    connection="ServiceBusConnection",
    is_sessions_enabled=True,
)
def urgent_dataverse_to_sap(msg: func.ServiceBusMessage) -> None:
    """Apply an urgent Dataverse order change (date, quantities, confirmation) to SAP."""
    outcome = wiring.urgent_orders().handle(
        "dataverse-to-sap", msg.get_body(), message_id=msg.message_id or ""
    )
    log.info("urgent dataverse-to-sap %s: %s", outcome.message_id, outcome.result)
