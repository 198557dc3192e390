"""The fresh-process probe behind the hub benchmark's cold-start rows (run by ``bench.hub_bench``).

    python -m bench._hub_coldstart import [MODULE ...]  # time ``import function_app`` (and MODULEs)
    python -m bench._hub_coldstart invoke ORDER         # import, then call HTTP and SB functions

Prints one JSON line. Only the standard library is imported before ``function_app``, so the
timed import pays for everything the app pulls in, as the Functions worker's indexing would.

``invoke`` needs the app settings of a running sandbox world in the environment and an urgent
order ``ORDER`` seeded in its SAP and Dataverse peers. It calls ``health`` and ``quote_intake``
with real ``func.HttpRequest`` objects, then ``quote_push`` (with the message the intake's output
binding produced) and both urgent-order functions with real ``ServiceBusMessage`` objects carrying
the trigger metadata the host supplies, and reports which of deltalake, pyarrow and polars are
loaded afterwards.
"""

from __future__ import annotations

import json
import os
import sys
import time

HEAVY = ("deltalake", "pyarrow", "polars")
# Not heavy in the sense, but ~0.2 s to import and needed only by the dead-letter tools.
WATCHED = (*HEAVY, "azure.servicebus")


def _loaded(prefixes: tuple[str, ...]) -> list[str]:
    return sorted(
        p for p in prefixes if any(m == p or m.startswith(p + ".") for m in list(sys.modules))
    )


def _import_app(*extra: str) -> dict[str, object]:
    before = len(sys.modules)
    start, cpu = time.perf_counter(), time.process_time()
    import function_app  # noqa: F401  (the import is what is measured)

    for name in extra:
        __import__(name)
    return {
        "import_seconds": time.perf_counter() - start,
        "import_cpu_seconds": time.process_time() - cpu,
        "modules_imported": len(sys.modules) - before,
    }


def probe_import(extra: list[str]) -> dict[str, object]:
    """Only ``import function_app``, then the ``extra`` modules, timed together."""
    return {**_import_app(*extra), "extra": extra, "loaded": _loaded(WATCHED)}


def _quote(quote_id: str) -> dict[str, object]:
    return {
        "quoteId": quote_id,
        "revision": 1,
        "accountNumber": "C0000001",
        "salesRep": "bench@contoso.com",
        "currency": "USD",
        "expectedCloseDate": "2026-12-01",
        "probability": 0.5,
        "shipTo": {"street": "1 Main St", "city": "Seattle", "postalCode": "98101"},
        "lines": [{"lineNumber": 1, "sku": "RTU-0100", "quantity": "1", "unitPrice": "10.00"}],
        "modifiedAt": "2026-11-20T10:00:00Z",
    }


def probe_invoke(order: str) -> dict[str, object]:
    """Import the app, then call HTTP and Service Bus functions against the sandbox."""
    timed = _import_app()
    import datetime as dt
    import uuid

    import azure.functions as func
    from azure.functions.meta import Datum
    from azure.functions.servicebus import ServiceBusMessage

    import function_app
    from sandbox import functions

    indexed = {
        str(f.get_function_name()): functions.IndexedFunction(
            name=str(f.get_function_name()),
            bindings=[functions.Binding(json.loads(b)) for b in f.get_raw_bindings()],
            user_function=f.get_user_function(),
        )
        for f in function_app.app.get_functions()
    }
    sequence = iter(range(1, 1000))

    def message(queue: str, body: bytes, session_id: str | None) -> ServiceBusMessage:
        # The fields and trigger metadata sandbox.dispatcher gives a first delivery.
        now = dt.datetime.now(dt.UTC)
        number, message_id, lock = next(sequence), uuid.uuid4().hex, str(uuid.uuid4())
        metadata = {
            "MessageId": Datum(message_id, "string"),
            "SequenceNumber": Datum(number, "int"),
            "DeliveryCount": Datum(1, "int"),
            "EnqueuedTimeUtc": Datum(now.isoformat(), "string"),
            "ApplicationProperties": Datum("{}", "json"),
            "UserProperties": Datum("{}", "json"),
            "ContentType": Datum("application/json", "string"),
            "LockToken": Datum(lock, "string"),
        }
        if session_id:
            metadata["SessionId"] = Datum(session_id, "string")
        return ServiceBusMessage(
            body=body,
            trigger_metadata=metadata,
            application_properties={},
            user_properties={},
            content_type="application/json",
            delivery_count=1,
            enqueued_sequence_number=number,
            enqueued_time_utc=now,
            locked_until=now + dt.timedelta(seconds=60),
            lock_token=lock,
            message_id=message_id,
            sequence_number=number,
            session_id=session_id,
            to=queue,
        )

    calls: list[dict[str, object]] = []

    def call(name: str, trigger: object) -> functions.Invocation:
        start = time.perf_counter()
        invocation = functions.invoke(indexed[name], trigger)
        seconds = time.perf_counter() - start
        status = getattr(invocation.result, "status_code", None)
        calls.append({"function": name, "seconds": seconds, "status": status})
        if status is not None and status >= 400:
            calls[-1]["body"] = invocation.result.get_body()[:500].decode("utf-8", "replace")
        return invocation

    call("health", func.HttpRequest("GET", "http://localhost/api/health", body=b""))
    call(
        "health",
        func.HttpRequest(
            "GET", "http://localhost/api/health?ready=1", params={"ready": "1"}, body=b""
        ),
    )
    body = json.dumps(_quote(f"QB-COLD-{uuid.uuid4().hex[:12]}")).encode()
    intake = call(
        "quote_intake",
        func.HttpRequest(
            "POST",
            "http://localhost/api/quotes",
            headers={"content-type": "application/json"},
            body=body,
        ),
    )
    push = str(intake.outputs.get("push", ""))
    if push:
        call("quote_push", message(os.environ["QUOTES_QUEUE_NAME"], push.encode(), None))
    stamp = dt.datetime.now(dt.UTC).isoformat()
    s2d = {
        "orderNumber": order,
        "sourceVersion": stamp,
        "changes": {"status": "C", "items": [{"item": "10", "quantity": "3"}]},
    }
    d2s = {
        "orderNumber": order,
        # Rising across probes that reuse the order, so each one applies rather than skips.
        "sourceVersion": time.time_ns() // 1_000_000,
        "changes": {"confirmed": True, "items": [{"item": "20", "quantity": "4"}]},
    }
    for name, setting, update in (
        ("urgent_sap_to_dataverse", "URGENT_SAP_TO_DATAVERSE_QUEUE_NAME", s2d),
        ("urgent_dataverse_to_sap", "URGENT_DATAVERSE_TO_SAP_QUEUE_NAME", d2s),
    ):
        call(name, message(os.environ[setting], json.dumps(update).encode(), order))
    return {
        **timed,
        "calls": calls,
        "push_enqueued": bool(push),
        "heavy": _loaded(HEAVY),
        "loaded": _loaded(WATCHED),
    }


def main(argv: list[str]) -> int:
    """Run one probe and print its JSON line."""
    if argv[:1] == ["import"]:
        result = probe_import(argv[1:])
    elif argv[:1] == ["invoke"] and len(argv) == 2:
        result = probe_invoke(argv[1])
    else:
        sys.stderr.write(__doc__ or "")
        return 2
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
