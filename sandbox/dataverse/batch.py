"""``multipart/mixed`` reading and writing for ``$batch``.

Source: powerapps-docs ``webapi/execute-batch-operations-using-web-api.md`` (request and response
shapes, change sets, ``Content-ID``) and OData v4 part 1 §11.7 (batch format); SupportArticles-docs
``web-api-client-errors.md`` ("Stream was not readable": a batch body whose lines do not end in
CRLF is refused with 0x80048d19).

Parts are delimited by ``--<boundary>`` lines; every structural line ends in CRLF. A part is
either ``application/http`` (one request: request line, headers, blank line, body) or a nested
``multipart/mixed`` change set whose parts are all ``application/http``.
"""

from __future__ import annotations

import http
import re
import uuid
from dataclasses import dataclass, field

CRLF = b"\r\n"
_BOUNDARY_RE = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)


class BatchFormatError(ValueError):
    """The batch body is not a well-formed multipart document."""


@dataclass
class BatchRequest:
    """One operation inside a batch."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    content_id: str | None = None


@dataclass
class ChangeSet:
    """Operations that succeed or fail together."""

    requests: list[BatchRequest]


@dataclass
class BatchResponse:
    """The answer to one operation."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    content_id: str | None = None


@dataclass
class ChangeSetResponse:
    responses: list[BatchResponse] = field(default_factory=list)


def boundary_of(content_type: str) -> str:
    match = _BOUNDARY_RE.search(content_type or "")
    if not match or not content_type.lower().startswith("multipart/mixed"):
        raise BatchFormatError(
            "The batch request must have a multipart/mixed Content-Type with a boundary."
        )
    return match.group(1) or match.group(2)


def _split(body: bytes, boundary: str) -> list[bytes]:
    """The raw parts between ``--boundary`` delimiter lines (RFC 2046 §5.1.1)."""
    delimiter = b"--" + boundary.encode("latin-1")
    parts: list[bytes] = []
    pos = 0
    # the first delimiter may open the body; later ones follow a CRLF
    if body.startswith(delimiter):
        start = 0
    else:
        start = body.find(CRLF + delimiter)
        if start < 0:
            raise BatchFormatError(f"The batch boundary '{boundary}' was not found.")
        start += 2
    pos = start
    while True:
        after = pos + len(delimiter)
        if body.startswith(b"--", after):
            return parts  # closing delimiter; the epilogue is ignored
        line_end = body.find(CRLF, after)
        if line_end < 0:
            raise BatchFormatError("The batch body ended before its closing boundary.")
        if body[after:line_end].strip(b" \t"):
            raise BatchFormatError("Unexpected text after a batch boundary.")
        nxt = body.find(CRLF + delimiter, line_end)
        if nxt < 0:
            raise BatchFormatError("The batch body ended before its closing boundary.")
        parts.append(body[line_end + 2 : nxt])
        pos = nxt + 2


def _headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw in block.split(CRLF):
        if not raw:
            continue
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep or not name.strip():
            raise BatchFormatError(f"Malformed header line '{raw.decode('latin-1')}'.")
        headers[name.strip().lower()] = value.strip()
    return headers


def _split_head(part: bytes) -> tuple[dict[str, str], bytes]:
    head, sep, rest = part.partition(CRLF + CRLF)
    if not sep:
        if part.startswith(CRLF):
            return {}, part[2:]
        raise BatchFormatError("A batch part has no blank line after its headers.")
    return _headers(head), rest


def _request(part: bytes, content_id: str | None) -> BatchRequest:
    mime, payload = _split_head(part)
    if not mime.get("content-type", "").lower().startswith("application/http"):
        raise BatchFormatError("Each batch operation must have Content-Type: application/http.")
    if mime.get("content-transfer-encoding", "binary").lower() != "binary":
        raise BatchFormatError("Batch operations must use Content-Transfer-Encoding: binary.")
    content_id = mime.get("content-id", content_id)
    line_end = payload.find(CRLF)
    request_line = payload[: line_end if line_end >= 0 else len(payload)].decode("utf-8")
    pieces = request_line.split(" ")
    if len(pieces) < 2 or not pieces[0].isalpha():
        raise BatchFormatError(f"Malformed request line '{request_line}'.")
    method = pieces[0].upper()
    url = (
        " ".join(pieces[1:-1]) if len(pieces) > 2 and pieces[-1].startswith("HTTP/") else pieces[1]
    )
    rest = payload[line_end + 2 :] if line_end >= 0 else b""
    if rest.startswith(CRLF):
        headers, body = {}, rest[2:]
    elif CRLF + CRLF in rest:
        headers, body = _split_head(rest)
    else:  # a bodiless request whose headers run to the end of the part
        headers, body = _headers(rest), b""
    return BatchRequest(
        method, url, headers, body.strip(b"\r\n \t"), content_id or headers.get("content-id")
    )


def parse(body: bytes, content_type: str) -> list[BatchRequest | ChangeSet]:
    """Read a ``$batch`` body into requests and change sets, in order."""
    if body and CRLF not in body:
        raise BatchFormatError("Stream was not readable.")
    items: list[BatchRequest | ChangeSet] = []
    for part in _split(body, boundary_of(content_type)):
        mime, payload = _split_head(part)
        ctype = mime.get("content-type", "")
        if ctype.lower().startswith("multipart/mixed"):
            inner_boundary = boundary_of(ctype)
            requests = []
            for inner in _split(payload, inner_boundary):
                inner_mime, _ = _split_head(inner)
                if inner_mime.get("content-type", "").lower().startswith("multipart/"):
                    raise BatchFormatError("Change sets cannot be nested.")
                requests.append(_request(inner, None))
            items.append(ChangeSet(requests))
        else:
            items.append(_request(part, None))
    return items


def _render_response(response: BatchResponse) -> bytes:
    lines = [b"Content-Type: application/http", b"Content-Transfer-Encoding: binary"]
    if response.content_id is not None:
        lines.append(f"Content-ID: {response.content_id}".encode("latin-1"))
    phrase = http.HTTPStatus(response.status).phrase
    lines += [b"", f"HTTP/1.1 {response.status} {phrase}".encode("latin-1")]
    lines += [f"{k}: {v}".encode("latin-1") for k, v in response.headers.items()]
    lines += [b"", response.body]
    return CRLF.join(lines)


def write(items: list[BatchResponse | ChangeSetResponse]) -> tuple[str, bytes]:
    """A ``multipart/mixed`` batch response: (Content-Type, body)."""
    boundary = f"batchresponse_{uuid.uuid4()}"
    chunks: list[bytes] = []
    for item in items:
        chunks.append(f"--{boundary}".encode("latin-1"))
        if isinstance(item, ChangeSetResponse):
            inner = f"changesetresponse_{uuid.uuid4()}"
            chunks.append(f"Content-Type: multipart/mixed; boundary={inner}".encode("latin-1"))
            chunks.append(b"")
            for response in item.responses:
                chunks.append(f"--{inner}".encode("latin-1"))
                chunks.append(_render_response(response))
            chunks.append(f"--{inner}--".encode("latin-1"))
        else:
            chunks.append(_render_response(item))
    chunks.append(f"--{boundary}--".encode("latin-1"))
    return f"multipart/mixed; boundary={boundary}", CRLF.join(chunks) + CRLF
