"""HTTP and Service Bus functions never import deltalake, pyarrow or polars — not at import time
and not while they run. Proven in a fresh interpreter that really calls them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent.parent

SCRIPT = r"""
import json, sys
from azure.functions import HttpRequest
from azure.functions.servicebus import ServiceBusMessage
from sandbox import functions

fns = {f.name: f for f in functions.load()}
quote = {
    "quoteId": "Q-IMPORTS-1", "revision": 0, "accountNumber": "NO-SUCH", "salesRep": "a@b.example",
    "currency": "USD", "expectedCloseDate": "2026-12-01", "probability": 0.5,
    "shipTo": {"street": "1 Main", "city": "Seattle", "postalCode": "98101"},
    "lines": [{"lineNumber": 1, "sku": "RTU-0100", "quantity": 1, "unitPrice": "10.00"}],
    "modifiedAt": "2026-11-20T10:00:00Z",
}
out = functions.invoke(fns["quote_intake"], HttpRequest(
    "POST", "http://localhost/api/quotes", headers={"content-type": "application/json"},
    body=json.dumps(quote).encode()))
statuses = [out.result.status_code]
functions.invoke(fns["quote_push"], ServiceBusMessage(
    body=out.outputs["push"].encode(), message_id="m-1", application_properties={},
    user_properties={}, delivery_count=1))
for name, url, route in [
    ("quote_status", "http://localhost/api/quotes/Q-IMPORTS-1", {"quoteId": "Q-IMPORTS-1"}),
    ("pricing", "http://localhost/api/pricing?since=2026-01-01T00:00:00Z", {}),
    ("openapi", "http://localhost/api/openapi.json", {}),
    ("health", "http://localhost/api/health?ready=1", {}),
]:
    params = dict(p.split("=", 1) for p in url.split("?", 1)[1].split("&")) if "?" in url else {}
    r = functions.invoke(fns[name], HttpRequest("GET", url, params=params, route_params=route, body=b""))
    statuses.append(r.result.status_code)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("deltalake", "pyarrow", "polars"))
print(json.dumps({"statuses": statuses, "heavy": heavy}))
"""


def test_http_and_service_bus_functions_run_without_heavy_libraries(world):
    # Given a fresh interpreter configured for the sandbox world
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **world.settings()}
    # When it calls the quote intake, the Service Bus push, status, pricing, openapi and health
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    # Then every call answered (the push ran to its rejection of the unknown account)
    assert report["statuses"] == [202, 200, 200, 200, 200]
    # and none of deltalake, pyarrow or polars was ever imported
    assert report["heavy"] == []
