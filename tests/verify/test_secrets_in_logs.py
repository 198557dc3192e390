"""A full ``make demo`` logs no secret and no token the sandbox issued, anywhere.

``python -m sandbox demo`` runs in a subprocess exactly as ``make demo`` does. It writes its
whole log at DEBUG from every logger to ``out/demo.log`` (through the worker's redacting filter,
``sandbox.demo.full_log``) and, when its world stops, every secret and token its sandbox issued to
``.sandbox/demo/issued-secrets.txt`` (``sandbox.secrets_registry``: the Issuer's JWTs, the
mainframe tokens, the Entra and mainframe client secrets, the SAP password, the HMAC secret, the
Service Bus key, the function and master keys). Searched for each of them, as written and
base64/percent/JSON-encoded (``sandbox.scan_secrets``): ``out/demo.log``, the demo's stdout and
stderr, and every file under ``out/`` (summary, report, dashboard, dry-run reports, earlier test
logs). Found must be 0. The figures go to ``out/verify-secrets.json``; the test sessions' own logs
are searched by ``tests/fixtures/log_capture.py`` (``out/verify-secrets-tests.json``).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sandbox import secrets_registry
from sandbox.scan_secrets import Scanner
from sandbox.world import ROOT_STATE

pytestmark = pytest.mark.verify

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "out"
ISSUED = ROOT_STATE / "demo" / "issued-secrets.txt"
# Every kind the demo's flows must have issued: without them the search would miss a whole class.
EXPECTED_KINDS = {
    "entra-jwt",
    "entra-client-secret",
    "mainframe-token",
    "mainframe-client-secret",
    "configured-sap",
    "configured-hmac",
    "service-bus-key",
    "function-key",
}
DEMO_TIMEOUT_SECONDS = 1800


@pytest.fixture(scope="module")
def demo_run() -> dict[str, object]:
    """One full ``python -m sandbox demo`` (as ``make demo``), with its output captured."""
    started_wall = time.time()
    started = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k != "SANDBOX_LOG_LEVEL"}
    completed = subprocess.run(
        [sys.executable, "-m", "sandbox", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_SECONDS,
        check=False,
    )
    return {
        "returncode": completed.returncode,
        "stdout": completed.stdout,
        "stderr": completed.stderr,
        "seconds": round(time.perf_counter() - started, 1),
        "startedAt": started_wall,
    }


def test_full_demo_log_stdout_and_out_files_hold_no_issued_secret(demo_run):
    # Given a full demo run that succeeded and recorded what its sandbox issued
    assert demo_run["returncode"] == 0, (
        str(demo_run["stdout"])[-2000:] + str(demo_run["stderr"])[-2000:]
    )
    assert ISSUED.stat().st_mtime >= float(demo_run["startedAt"]), "issued-secrets.txt is stale"
    issued = secrets_registry.load(ISSUED)
    kinds = set(issued.values())
    assert kinds >= EXPECTED_KINDS, f"kinds missing from the record: {EXPECTED_KINDS - kinds}"
    log = OUT / "demo.log"
    assert log.stat().st_mtime >= float(demo_run["startedAt"]), "out/demo.log is stale"
    log_text = log.read_text("utf-8", "replace")
    # (the log is the full DEBUG log of the app, its SDKs and the sandbox, not a filtered one)
    for logger in ("urllib3.connectionpool", "azure.", "msal.", "shared."):
        assert f" {logger}" in log_text, f"no {logger} record in out/demo.log"
    assert " DEBUG " in log_text

    # When the log, the captured output and every out/ file are searched for every value
    scanner = Scanner(issued)
    result = scanner.scan_paths([OUT])
    scanner.scan_text(str(demo_run["stdout"]), "demo stdout", result)
    scanner.scan_text(str(demo_run["stderr"]), "demo stderr", result)
    (OUT / "verify-secrets.json").write_text(
        json.dumps(
            {
                "demo": {
                    "exitCode": demo_run["returncode"],
                    "seconds": demo_run["seconds"],
                    "logLines": log_text.count("\n"),
                    "kinds": secrets_registry.kinds_of(issued),
                    **result.as_json(),
                }
            },
            indent=2,
        )
        + "\n",
        "utf-8",
    )

    # Then nothing is found (locations and kinds only in the message, never a value)
    assert result.lines > 1000
    assert result.findings == [], "\n".join(map(str, result.findings))


def test_the_search_finds_an_issued_token_planted_in_a_log_line(demo_run):
    # Given one JWT and the hub's client secret the demo's sandbox really issued
    issued = secrets_registry.load(ISSUED)
    token = next(v for v, k in issued.items() if k == "entra-jwt")
    secret = next(v for v, k in issued.items() if k == "entra-client-secret")
    basic = base64.b64encode(f"client:{secret}".encode()).decode()
    # When a log line holding the token, and one holding the secret inside a Basic header, are
    # searched with the same scanner as the demo's output
    line = f"DEBUG x sent Authorization: Bearer {token}\nDEBUG y Authorization: Basic {basic}\n"
    result = Scanner(issued).scan_text(line, "planted")
    # Then both are found, by line, and the report names their kind and not their value
    assert [(f.line, f.kind) for f in result.findings] == [
        (1, "entra-jwt"),
        (2, "entra-client-secret"),
    ]
    assert all(token not in str(f) and secret not in str(f) for f in result.findings)
