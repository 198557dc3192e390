"""No secret or token the sandbox issued ever shows in a log line, a problem+json body, an
exception text or an ``out/`` file.

Every log record of a full flow (quote intake, the push to Dataverse, the qualification callback,
the mainframe poll, an SAP availability call, Key Vault reads) is captured by a handler on the root
logger, set up the way ``shared.log.install()`` sets up every root handler in the worker. The
values searched for are every configured secret (``World.secret_values``: client secrets, the SAP
password, the mainframe secret, the callback HMAC secret), both Entra client secrets, and every
access token the sandbox issued during the flow: the Entra peer's (JWTs, recorded by wrapping the
shared ``Issuer.issue`` for the test) and the mainframe gateway's (opaque, held by the peer).
"""

from __future__ import annotations

import io
import logging
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import log as hub_log
from shared import wiring
from shared.adapters.mainframe import MainframeClient
from shared.adapters.sap import SapClient
from shared.errors import PermanentError, TransientError
from shared.http import HttpClient, RetryPolicy, make_session
from tests.fixtures.quote_flow import seed_master_data
from tests.integration.test_quote_flow import (
    post,
    qualify_in_dataverse,
    quote,
    status,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


class Recorder(logging.Handler):
    """Keeps every formatted record, exception text included."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def captured_logs() -> Iterator[Recorder]:
    """A root handler for the test, filtered like every worker handler (``install()``), at DEBUG
    so that library chatter (msal, urllib3, azure-core) is searched too."""
    root = logging.getLogger()
    recorder = Recorder()
    level = root.level
    root.addHandler(recorder)
    hub_log.install()
    root.setLevel(logging.DEBUG)
    try:
        yield recorder
    finally:
        root.setLevel(level)
        root.removeHandler(recorder)


@pytest.fixture
def issued_tokens(world, monkeypatch) -> list[str]:
    """Every JWT the sandbox Issuer signs while the test runs (Entra tokens for Dataverse and
    Key Vault; direct test tokens too)."""
    tokens: list[str] = []
    original = world.issuer.issue

    def issue(client_id: str, audience: str, lifetime: int | None = None) -> str:
        token = original(client_id, audience, lifetime)
        tokens.append(token)
        return token

    monkeypatch.setattr(world.issuer, "issue", issue)
    return tokens


def secrets_of(world, tokens: list[str]) -> dict[str, str]:
    """Every secret value and token to search for, named for the failure message."""
    found = {f"secret:{k}": v for k, v in world.secret_values.items()}
    found["hub-client-secret"] = world.hub_client[1]
    found["test-client-secret"] = world.test_client[1]
    for i, token in enumerate(tokens):
        found[f"entra-token-{i}"] = token
    with world.peers["mainframe"].lock:
        mainframe_tokens = list(world.peers["mainframe"].tokens)
    for i, token in enumerate(mainframe_tokens):
        found[f"mainframe-token-{i}"] = token
    return found


def leaks(texts: list[str], secrets: dict[str, str]) -> list[tuple[str, str]]:
    """(secret name, excerpt) for every text holding a secret value."""
    found = []
    for text in texts:
        for name, value in secrets.items():
            if value and value in text:
                found.append((name, text[:120]))
    return found


def run_full_flow(world, http) -> list[str]:
    """Drive every flow that touches a credential; returns the error bodies the app answered."""
    e = world.endpoints()
    for name in ("dataverse", "quotingTool", "mainframe"):
        http.post(f"{e[name]}/_sandbox/reset").raise_for_status()
    # A fresh composition root: every token and secret is fetched again while we record.
    wiring.reset()
    seed_master_data(world, http)
    world.hub.dispatcher.run_until_idle()
    quote_id = f"Q-S{uuid.uuid4().hex[:8].upper()}"
    assert post(world, http, quote(quote_id)).status_code == 202
    world.hub.dispatcher.run_until_idle()
    qualify_in_dataverse(world, http, status(world, http, quote_id)["dataverseId"])
    world.hub.run_timer("quote_qualification")
    assert status(world, http, quote_id)["status"] == "qualified"
    world.hub.run_timer("mainframe_poll")
    key = {"x-functions-key": world.hub.function_key}
    availability = http.get(f"{world.hub.base_url}/api/products/RTU-0100/availability", headers=key)
    assert availability.status_code < 500, availability.text
    errors = [
        http.get(f"{world.hub.base_url}/api/quotes/Q-NONE", headers=key),
        http.get(f"{world.hub.base_url}/api/pricing", headers=key),
        http.get(f"{world.hub.base_url}/api/products/a'b/availability", headers=key),
        post(world, http, b"{bad"),
        post(world, http, quote(quote_id, notes="other content, same revision")),
        post(world, http, quote("Q-X", accountNumber="bad'")),
    ]
    assert all(400 <= r.status_code < 500 for r in errors), [r.status_code for r in errors]
    return [r.text for r in errors]


def test_full_flow_logs_and_error_bodies_hold_no_secret_or_token(
    world, hub_http, captured_logs, issued_tokens
):
    # Given a full flow run with every log record captured and every token recorded
    problem_bodies = run_full_flow(world, hub_http)
    secrets = secrets_of(world, issued_tokens)
    # (the flow did fetch tokens, so the search below has something to find)
    assert any(name.startswith("entra-token") for name in secrets)
    assert any(name.startswith("mainframe-token") for name in secrets)
    assert len(captured_logs.lines) > 20
    # When every log line and every problem+json body is searched for every value
    found = leaks(captured_logs.lines + problem_bodies, secrets)
    # Then none is found
    assert found == []


def test_out_files_hold_no_secret_of_this_world(world):
    # Given whatever earlier runs (make demo, make bench) wrote to out/
    files = [p for p in (ROOT / "out").rglob("*") if p.is_file() and p.stat().st_size < 50_000_000]
    texts = [p.read_bytes().decode("utf-8", "replace") for p in files]
    # When they are searched for this world's secrets and for the demo world's fixed ones
    found = leaks(texts, secrets_of(world, []))
    # Then none is found
    assert found == []


def _wrong(value: str) -> str:
    return value[::-1] + "-wrong"


def test_refused_mainframe_secret_never_appears_in_the_exception(world):
    # Given a mainframe client holding a wrong secret
    wrong = _wrong(world.secret_values["mainframe"])
    client = MainframeClient(
        world.endpoints()["mainframe"],
        world.settings()["MAINFRAME_CLIENT_ID"],
        lambda: wrong,
        session=make_session(str(world.ca_bundle)),
        policy=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02),
    )
    # When it asks for a token
    with pytest.raises((PermanentError, TransientError)) as caught:
        client.token()
    # Then the error says it was refused, and neither secret is in its text or its chain
    texts = _exception_texts(caught.value)
    assert leaks(texts, {"wrong": wrong, "real": world.secret_values["mainframe"]}) == []


def test_refused_sap_password_never_appears_in_the_exception(world):
    # Given an SAP client with a wrong password
    wrong = _wrong(world.secret_values["sap"])
    http = HttpClient(
        make_session(str(world.ca_bundle)),
        policy=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02),
        timeout=10,
        name="sap",
    )
    client = SapClient(
        http,
        world.endpoints()["sap"],
        username=world.settings()["SAP_USERNAME"],
        password=lambda: wrong,
    )
    # When it reads a sales order
    with pytest.raises((PermanentError, TransientError)) as caught:
        client.get_sales_order("7000000001")
    # Then neither the wrong nor the real password is in the error text or its chain
    texts = _exception_texts(caught.value)
    assert leaks(texts, {"wrong": wrong, "real": world.secret_values["sap"]}) == []


def _exception_texts(exc: BaseException) -> list[str]:
    """str, repr and the formatted traceback of an exception and everything it chains to."""
    texts: list[str] = []
    current: BaseException | None = exc
    while current is not None:
        texts += [str(current), repr(current), *map(str, getattr(current, "args", ()))]
        current = current.__cause__ or current.__context__
    buffer = io.StringIO()
    traceback.print_exception(exc, file=buffer)
    texts.append(buffer.getvalue())
    return texts
