"""Property-based requests generated from the app's own OpenAPI document (schemathesis) against the
app served by the dev HTTP adapter: whatever a client sends, the answer is never a 5xx, and every
error the app gives is RFC 9457 problem+json. The host-level refusals (401/404/405/413 before any
function code) carry the Functions host's empty body and are counted apart.

The full run (marker ``verify``, ``make verify``) sends at least 2,000 generated requests across all
operations and writes its figures to ``out/verify-schemathesis.json``; a reduced run of the same
checks is part of ``make test`` (marker ``integration``).
Schemathesis pytest integration: schemathesis.readthedocs.io (``schemathesis.pytest.from_fixture``).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

ROOT = Path(__file__).resolve().parents[2]
FULL_EXAMPLES_PER_OPERATION = 300
REDUCED_EXAMPLES_PER_OPERATION = 12
PROBLEM = "application/problem+json"
HOST_STATUSES = {401, 404, 405, 413}

_lock = threading.Lock()
figures: dict[str, Counter[str]] = {"full": Counter(), "reduced": Counter()}


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx: Any, value: Any) -> bytes:
    """NDJSON for the archive import: one JSON text per line (a generated array is its lines)."""
    rows = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


def api_schema(world: Any, http: Any) -> Any:
    """The OpenAPI document the app serves, as schemathesis reads it."""
    document = http.get(f"{world.hub.base_url}/api/openapi.json").json()
    return schemathesis.openapi.from_dict(document)


def check(case: Any, world: Any, http: Any, run: str) -> None:
    """Send one generated case with the function key and assert the answer's shape."""
    response = case.call(
        base_url=world.hub.base_url,
        session=http,
        headers={"x-functions-key": world.hub.function_key},
        timeout=30,
    )
    status = response.status_code
    with _lock:
        figures[run]["requests"] += 1
        figures[run][f"status:{status}"] += 1
    assert status < 500, (case.method, case.formatted_path, status, response.text[:300])
    if status >= 400:
        # schemathesis' Response keeps headers as lower-cased names to lists of values.
        headers = {
            k.lower(): v[0] if isinstance(v, list) else v for k, v in response.headers.items()
        }
        content_type = str(headers.get("content-type", ""))
        if content_type.startswith(PROBLEM):
            body = response.json()
            assert body["status"] == status and body["title"] and body["type"]
        else:
            # Only the host's own refusals come without a problem body, and then with no body.
            assert status in HOST_STATUSES, (case.method, case.formatted_path, status, content_type)
            assert response.content == b""


def run_all_operations(world: Any, http: Any, run: str, examples: int, derandomize: bool) -> int:
    """Generate ``examples`` cases per operation of the document; returns the operation count.
    (schemathesis.pytest.from_fixture relies on pytest internals that pytest 9 removed, so the
    operations are driven with their Hypothesis strategies directly.)"""
    operations = 0
    for result in api_schema(world, http).get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=derandomize,
            database=None,
        )
        def generated(case: Any) -> None:
            check(case, world, http, run)

        generated()
    return operations


@pytest.mark.integration
def test_generated_requests_reduced_never_5xx_and_errors_are_problem_json(world, hub_http):
    # Given every operation of /api/openapi.json; when a few generated requests hit each
    operations = run_all_operations(
        world, hub_http, "reduced", REDUCED_EXAMPLES_PER_OPERATION, True
    )
    # Then (checked per request) no 5xx, and every error is problem+json or a host refusal
    assert operations >= 5
    assert figures["reduced"]["requests"] >= operations


@pytest.mark.verify
def test_generated_requests_full_never_5xx_and_errors_are_problem_json(world, hub_http):
    operations = run_all_operations(world, hub_http, "full", FULL_EXAMPLES_PER_OPERATION, False)
    assert operations >= 5


@pytest.mark.verify
def test_full_run_sent_at_least_2000_requests_and_records_its_figures(world):
    # Runs after the generated tests of this module (pytest keeps definition order).
    run = figures["full"]
    out = ROOT / "out"
    out.mkdir(exist_ok=True)
    statuses = {k.split(":", 1)[1]: v for k, v in sorted(run.items()) if k.startswith("status:")}
    five_xx = sum(v for k, v in statuses.items() if k.startswith("5"))
    (out / "verify-schemathesis.json").write_text(
        json.dumps({"requests": run["requests"], "byStatus": statuses, "5xx": five_xx}, indent=2)
    )
    assert run["requests"] >= 2000
    assert five_xx == 0
