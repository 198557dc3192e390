"""The test-log secret search (``tests/fixtures/log_capture.py``) fails a session that logged an
issued secret, naming where without the value, and fails a session that ran the sandbox world but
recorded nothing, rather than passing with nothing searched.

Each case is a separate pytest session in a subprocess, with the plugin loaded by ``-p`` and its
output folder moved out of ``out/`` (``DATAHUB_TEST_OUT``).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def run_session(tmp_path: Path, test_source: str) -> tuple[int, str, dict[str, object]]:
    """Run one pytest session over ``test_source``; (exit code, output, figures written)."""
    (tmp_path / "test_inner.py").write_text(test_source)
    out = tmp_path / "out"
    # No entry-point plugins (hypothesis, schemathesis): they take seconds to import, unused here.
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATAHUB_TEST_OUT": str(out),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.fixtures.log_capture",
            "--rootdir",
            str(tmp_path),
            str(tmp_path / "test_inner.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    figures = json.loads((out / "verify-secrets-tests.json").read_text())
    return completed.returncode, completed.stdout + completed.stderr, figures


def test_a_session_that_logs_an_issued_secret_fails_naming_the_line_not_the_value(tmp_path):
    # Given a session whose test records a token as the sandbox does, then logs it, URL-encoded
    secret = secrets.token_urlsafe(24) + "/+"
    source = f"""
import logging, urllib.parse
from sandbox import secrets_registry

def test_logs_a_token():
    secrets_registry.record("mainframe-token", {secret!r})
    logging.getLogger("leaky").debug("GET /x?t=%s", urllib.parse.quote({secret!r}, safe=""))
"""
    # When the session runs (the test itself passes)
    code, output, figures = run_session(tmp_path, source)
    # Then the session fails, the report names file, line and kind, and never the value
    assert code == 1, output
    assert "1 passed" in output
    assert "secret in a test log: " in output and "mainframe-token (url)" in output
    assert secret not in output
    assert figures["found"] == 1 and figures["secretsKnown"] == 1
    log = next((tmp_path / "out" / "test-logs").glob("*.log"))
    assert secret not in json.dumps(figures)
    assert "leaky" in log.read_text()


def test_a_session_that_ran_the_world_but_recorded_nothing_fails(tmp_path):
    # Given a session with a `world` fixture under which no secret is recorded
    source = """
import logging
import pytest

@pytest.fixture
def world():
    logging.getLogger("inner").info("a world that issued nothing")
    return object()

def test_uses_the_world(world):
    assert world is not None
"""
    # When the session runs
    code, output, figures = run_session(tmp_path, source)
    # Then it fails: an empty registry would make "found: 0" meaningless
    assert code == 1, output
    assert "no secret or token was recorded" in output
    assert figures["checked"] is False and figures["worldUsed"] is True


def test_a_clean_session_passes_with_its_figures(tmp_path):
    # Given a session that records a secret and logs only other things
    source = """
import logging, secrets
from sandbox import secrets_registry

def test_clean():
    secrets_registry.record("function-key", secrets.token_urlsafe(32))
    logging.getLogger("inner").debug("nothing secret here")
"""
    # When it runs
    code, output, figures = run_session(tmp_path, source)
    # Then it passes, having searched the session's log for the one secret
    assert code == 0, output
    assert (figures["found"], figures["secretsKnown"], figures["checked"]) == (0, 1, True)
    assert int(str(figures["linesScanned"])) >= 1
