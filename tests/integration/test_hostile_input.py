"""Hostile input against the app served by the dev HTTP adapter and its Service Bus triggers.

The corpus is data (``tests/hostile/*.json``): each request names the answer it must get. Every
answer is below 500; every error the app gives is RFC 9457 problem+json. The host-level refusals
(401 without a valid function key, 404 for no matching route, 413 over the 100 MiB request limit)
are answered by the dev host with an empty body, as the Functions host does: the key check and the
body limit run before any function code (learn.microsoft.com/azure/azure-functions/
functions-bindings-http-webhook-trigger#api-keys, ... /functions-scale#service-limits,
FUNCTIONS_REQUEST_BODY_SIZE_LIMIT). JSON rules: RFC 8259 §4 (duplicate names), §6 (no NaN or
Infinity), §8.1 (no BOM), §8.2 (unpaired surrogates). Header fields: RFC 9110 §5.5 (a field value
never carries CR or LF; obs-fold is to be replaced or refused).
"""

from __future__ import annotations

import http.client
import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from shared import wiring
from tests.integration.test_quote_flow import quote

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parent.parent / "hostile"
PROBLEM = "application/problem+json"
_FILL_CHUNK = 1 << 20


def corpus(name: str) -> list[dict[str, Any]]:
    """The cases of one corpus file."""
    cases: list[dict[str, Any]] = json.loads((CORPUS / f"{name}.json").read_text())["cases"]
    return cases


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in cases]


def body_chunks(spec: dict[str, Any] | None, uid: str) -> Iterator[bytes]:
    """The body a corpus ``body`` spec describes, in chunks (a 100 MB fill is never held whole)."""
    if not spec:
        return
    if "text" in spec:
        yield spec["text"].replace("{uid}", uid).encode("utf-8")
    elif "hex" in spec:
        yield bytes.fromhex(spec["hex"])
    elif "quote" in spec:
        overrides = json.loads(json.dumps(spec["quote"]).replace("{uid}", uid))
        text = json.dumps(quote(overrides.pop("quoteId", f"Q-H{uid}"), **overrides))
        # "__RAW__<token>" puts a JSON token no encoder would write (1e309, 5000 digits).
        while '"__RAW__' in text:
            start = text.index('"__RAW__')
            end = text.index('"', start + 1)
            text = text[:start] + text[start + len('"__RAW__') : end] + text[end + 1 :]
        yield text.encode("utf-8")
    elif "nest" in spec:
        n = spec["nest"]
        yield (n["open"] * n["depth"] + n["inner"] + n["close"] * n["depth"]).encode("utf-8")
    elif "fill" in spec:
        f = spec["fill"]
        yield f["prefix"].encode("utf-8")
        remaining = int(f["size"])
        block = f["char"].encode("utf-8") * _FILL_CHUNK
        while remaining > 0:
            yield block[: min(remaining, _FILL_CHUNK)]
            remaining -= _FILL_CHUNK
        yield f["suffix"].encode("utf-8")
    else:
        raise ValueError(f"unknown body spec {sorted(spec)}")


def send(
    base_url: str, case: dict[str, Any], key: str, uid: str
) -> tuple[int, dict[str, str], bytes]:
    """Send one corpus request with http.client, which keeps the path exactly as written (a
    requests/urllib3 URL would have its dot segments removed before they reach the host)."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=300)
    try:
        conn.putrequest(
            case["method"], case["path"].replace("{uid}", uid), skip_accept_encoding=True
        )
        headers: dict[str, str | None] = {"Content-Type": "application/json"}
        headers.update(case.get("headers", {}))
        if case.get("key", "valid") == "valid":
            headers["x-functions-key"] = key
        elif case["key"] == "wrong":
            headers["x-functions-key"] = key[::-1]
        for name, value in headers.items():
            if value is not None:
                conn.putheader(name, value)
        chunks = body_chunks(case.get("body"), uid)
        if case.get("chunked"):
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            try:
                for chunk in chunks:
                    if chunk:
                        conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                conn.send(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                # A host that refused the body early may close before reading the rest.
                pass
        else:
            body = b"".join(chunks)
            if case.get("body") is not None or case["method"] in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def assert_answer(case: dict[str, Any], status: int, headers: dict[str, str], body: bytes) -> None:
    """The expected status; a problem+json error body, or the host's empty one."""
    expect = case["expect"]
    assert status < 500, (case["name"], status, body[:300])
    assert status == expect["status"], (case["name"], status, body[:300])
    if expect["problem"]:
        assert headers.get("content-type", "").startswith(PROBLEM), (case["name"], headers)
        problem = json.loads(body)
        assert problem["status"] == status
        assert problem["title"] and problem["type"].startswith("https://")
    elif status in (401, 404, 413):
        assert body == b"", (case["name"], body[:300])


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:10].upper()


@pytest.fixture
def drained(world) -> Iterator[Any]:
    """Leave no message of these tests for later ones: accepted quotes are pushed (and rejected
    for their unknown account) before the next test runs."""
    world.hub.dispatcher.run_until_idle()
    yield world
    world.hub.dispatcher.run_until_idle()


@pytest.mark.parametrize("case", corpus("http"), ids=_ids(corpus("http")))
def test_hostile_request_gets_its_expected_status_and_never_a_5xx(case, drained, uid):
    # Given a hostile request from the corpus
    # When it is sent to the app through the dev HTTP adapter
    status, headers, body = send(drained.hub.base_url, case, drained.hub.function_key, uid)
    # Then it gets its expected answer, below 500, in problem+json when the app refuses it
    assert_answer(case, status, headers, body)


def raw_exchange(base_url: str, head: bytes) -> tuple[int, list[tuple[str, str]]]:
    """Send a hand-written request head over a socket (no client library would send a CR inside
    a header value) and return the status and the raw response header lines."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head)
        received = b""
        while b"\r\n\r\n" not in received:
            data = sock.recv(65536)
            if not data:
                break
            received += data
    status_line, *lines = received.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    fields = [tuple(part.strip() for part in line.split(":", 1)) for line in lines if line]
    return int(status_line.split()[1]), [(f[0].lower(), f[1] if len(f) > 1 else "") for f in fields]


@pytest.mark.parametrize("case", corpus("headers"), ids=_ids(corpus("headers")))
def test_correlation_header_carrying_line_breaks_is_never_reflected(case, drained):
    # Given a request whose x-correlation-id tries to smuggle a second response header
    parts = urlsplit(drained.hub.base_url)
    head = (
        (
            f"GET /api/quotes/Q-NOT-THERE HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"x-functions-key: {drained.hub.function_key}\r\n"
        ).encode()
        + case["rawHeader"].encode("latin-1")
        + b"Connection: close\r\n\r\n"
    )
    # When it reaches the app
    status, fields = raw_exchange(drained.hub.base_url, head)
    # Then the answer is the app's 404 problem, no smuggled header appears, and the correlation
    # id sent back holds no line break or control character
    assert status == case["expect"]["status"]
    names = [name for name, _ in fields]
    assert "set-cookie" not in names
    assert "x-injected" not in names
    echoed = [value for name, value in fields if name == "x-correlation-id"]
    assert len(echoed) == 1
    # An obs-fold is unfolded into one value with a space (RFC 9110 §5.5 allows that); what
    # matters is that no CR, LF or other control character comes back.
    assert all(0x20 <= ord(ch) < 0x7F for ch in echoed[0]), echoed


def test_plain_correlation_id_is_echoed_so_the_negative_cases_mean_something(drained):
    # Given a well-formed correlation id
    parts = urlsplit(drained.hub.base_url)
    head = (
        f"GET /api/quotes/Q-NOT-THERE HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"x-functions-key: {drained.hub.function_key}\r\n"
        "x-correlation-id: cid-123\r\nConnection: close\r\n\r\n"
    ).encode()
    # When it reaches the app
    status, fields = raw_exchange(drained.hub.base_url, head)
    # Then it is echoed back unchanged
    assert status == 404
    assert ("x-correlation-id", "cid-123") in fields


@pytest.mark.parametrize("case", corpus("servicebus"), ids=_ids(corpus("servicebus")))
def test_hostile_service_bus_message_is_rejected_with_a_recorded_reason(case, drained, uid):
    # Given a malformed, oversized or unmappable message on one of the app's queues
    queue = drained.settings()[case["queue"]]
    message_id = f"hostile-{case['name']}-{uid}"
    body = b"".join(body_chunks(case["body"], uid))
    session = f"hostile-{uid}" if case.get("session") else None
    drained.hub.dispatcher.send(queue, body, message_id=message_id, session_id=session)
    # When the dispatcher delivers it to the app
    drained.hub.dispatcher.run_until_idle()
    # Then the app completed it with a recorded rejection saying why
    key = case.get("key", message_id).replace("{uid}", uid)
    found = [r for r in wiring.rejections().list(case["flow"]) if r.key == key]
    assert len(found) == 1, (case["name"], [r.key for r in wiring.rejections().list(case["flow"])])
    assert case["reason"].lower() in found[0].reason.lower(), found[0].reason
    # and did not leave it to be retried into the dead-letter queue
    dead = [d for d in drained.hub.dispatcher.dead_letters(queue) if d.message_id == message_id]
    assert dead == []
