"""Logging with correlation ids and secret redaction.

Every secret or token the hub obtains is registered here; a filter on the root logger replaces
any occurrence in a log record with ``***``. Patterns catch bearer tokens and signatures that
were never registered (for example a token echoed by a peer in an error body).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import threading
import uuid
from collections.abc import Iterator

correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="-")

_lock = threading.Lock()
_secrets: set[str] = set()
_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(
        r"(?i)((?:client_secret|password|access_token|sig|signature)[\"']?\s*[=:]\s*[\"']?)[^\s&\"',}]{4,}"
    ),
    re.compile(r"(?i)(AccountKey=|SharedAccessKey=)[^;\s]+"),
]


def register_secret(value: str | None) -> None:
    """Remember a secret value so that it is scrubbed from every later log line."""
    if value and len(value) >= 6:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Return ``text`` with every registered secret and token-like value replaced by ***."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, "***")
    for pattern in _PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


class RedactingFilter(logging.Filter):
    """Scrubs secrets from the formatted message and stamps the correlation id."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation_id.get()
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def install() -> None:
    """Attach the redacting filter to every root handler (idempotent) and quiet the Azure SDK's
    per-request header dump, as ``host.json`` does for the host's own ``Azure.Core`` category."""
    # The SDK's HTTP logging policy writes every request's and response's headers at INFO: on the
    # urgent-order path that is several lines per message and a measurable share of its CPU time
    # (docs/performance.md). A level an operator set explicitly is left alone.
    sdk_http = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
    if sdk_http.level == logging.NOTSET:
        sdk_http.setLevel(logging.WARNING)
    root = logging.getLogger()
    if not root.handlers:
        handler: logging.Handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s")
        )
        root.addHandler(handler)
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


@contextlib.contextmanager
def correlation(value: str | None = None) -> Iterator[str]:
    """Bind a correlation id (given, or a new one) for the duration of a unit of work."""
    cid = value or uuid.uuid4().hex
    token = correlation_id.set(cid)
    try:
        yield cid
    finally:
        correlation_id.reset(token)
