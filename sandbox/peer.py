"""The base every sandbox peer builds on.

A peer is a WSGI app (werkzeug routing) served on 127.0.0.1 in a thread, plus the control
surface every peer exposes under ``/_sandbox/``:

- ``POST reset``            forget all state, faults and the request log
- ``POST seed``             ``{table: [records]}`` -> ``{table: count}``
- ``GET  records/<table>``  everything stored in a table
- ``PUT  faults``           ``{latencyMs, rate429, retryAfterSeconds, rate5xx, rateTimeout, rateReset, seed}``
- ``GET  requests``         the log of non-control requests (method, path, status, fault,
                            Retry-After, the client's ``x-ms-client-request-id``, start and end
                            times) and counts
- ``PUT|GET|DELETE hold``   hold one request in flight (crash tests): ``{method, path, nth, phase,
                            timeoutSeconds}``; ``GET ?wait=s`` waits until it is held; ``DELETE``
                            lets it go (``phase`` before: dropped unanswered, it never ran;
                            after: it ran, and its answer is sent only now)

Faults are drawn from a ``random.Random(seed)``, so a given seed and request order gives the same
faults. They apply only to non-control routes. 5xx, timeouts and resets hit either before the
operation runs or after it ran with its answer lost (``faultPhase``: before | after | mixed), since
a lost answer to a committed write is what really tests a client's idempotency.

Subclasses implement ``routes()`` and ``error(status, code, message)`` in their system's own error
format, and raise ``PeerError`` from handlers. No handler failure ever reaches a client as a
Python traceback: it becomes the peer's own 500 body.
"""

from __future__ import annotations

import json
import logging
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from sandbox.tls import Tls

log = logging.getLogger(__name__)

Handler = Callable[..., Response]
CLIENT_REQUEST_ID = "x-ms-client-request-id"


class PeerError(Exception):
    """Raised by handlers; rendered by the peer's ``error`` in its own system's format."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass
class Faults:
    latencyMs: int = 0
    rate429: float = 0.0
    retryAfterSeconds: float = 1.0
    rate5xx: float = 0.0
    rateTimeout: float = 0.0
    rateReset: float = 0.0
    seed: int = 0
    timeoutMs: int = 6000
    faultPhase: str = "mixed"

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Faults:
        known = set(cls.__dataclass_fields__)
        unknown = set(body) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        faults = cls(**body)
        for rate in ("rate429", "rate5xx", "rateTimeout", "rateReset"):
            value = getattr(faults, rate)
            if not 0 <= float(value) <= 1:
                raise ValueError(f"{rate} must be within 0..1")
        if faults.faultPhase not in ("before", "after", "mixed"):
            raise ValueError("faultPhase must be before, after or mixed")
        return faults

    @property
    def active(self) -> bool:
        return bool(
            self.latencyMs or self.rate429 or self.rate5xx or self.rateTimeout or self.rateReset
        )


@dataclass
class LoggedRequest:
    method: str
    path: str
    status: int
    fault: str | None = None
    at: float = field(default_factory=time.time)
    # One id per logical client request, constant across its retries (Azure SDKs and the hub's
    # HttpClient send it), so a log reader can count attempts per request and time the waits.
    clientRequestId: str | None = None
    started: float | None = None
    retryAfter: str | None = None
    """The answer's Retry-After header, if it had one (throttling, fault or the system's own)."""


@dataclass
class Hold:
    """Which request to hold: the ``nth`` non-control request whose method is ``method`` (any
    when empty) and whose path with query matches the regular expression ``path``."""

    path: str
    method: str = ""
    nth: int = 1
    phase: str = "before"
    timeoutSeconds: float = 60.0

    @classmethod
    def parse(cls, body: Any) -> Hold:
        if not isinstance(body, dict):
            raise ValueError("hold takes {path, method, nth, phase, timeoutSeconds}")
        unknown = set(body) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown hold fields: {sorted(unknown)}")
        hold = cls(**body)
        re.compile(hold.path)
        if not isinstance(hold.nth, int) or hold.nth < 1:
            raise ValueError("nth must be a positive integer")
        if hold.phase not in ("before", "after"):
            raise ValueError("phase must be before or after")
        if not 0 < float(hold.timeoutSeconds) <= 600:
            raise ValueError("timeoutSeconds must be within 0..600")
        return hold


class _HoldState:
    """One armed hold: how many requests matched, and the held one, until it is let go."""

    def __init__(self, rule: Hold) -> None:
        self.rule = rule
        self.pattern = re.compile(rule.path)
        self.matched = 0
        self.request: dict[str, str] | None = None
        self.held = threading.Event()
        self.released = threading.Event()

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": asdict(self.rule),
            "matched": self.matched,
            "held": self.held.is_set(),
            "released": self.released.is_set(),
            "request": self.request,
        }


class _DropConnection(Exception):
    """Internal: abort the connection (timeout or reset fault)."""


class _QuietHandler(WSGIRequestHandler):
    """Request handler that logs nothing per request and survives deliberate resets."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return

    def log_error(self, format: str, *args: Any) -> None:
        return

    def log(self, type: str, message: str, *args: Any) -> None:
        return


class Peer:
    """Base class of the sandbox peers. See the module docstring."""

    name = "peer"
    max_body_bytes = 16 * 1024 * 1024

    def __init__(self, *, tls: Tls | None = None) -> None:
        self.tls = tls
        self.lock = threading.RLock()
        self.faults = Faults()
        self._rng = random.Random(0)
        self.request_log: list[LoggedRequest] = []
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._hold: _HoldState | None = None
        self.base_url = ""
        rules = [
            Rule("/_sandbox/reset", methods=["POST"], endpoint=self._control_reset),
            Rule("/_sandbox/seed", methods=["POST"], endpoint=self._control_seed),
            Rule("/_sandbox/records/<path:table>", methods=["GET"], endpoint=self._control_records),
            Rule("/_sandbox/faults", methods=["PUT", "GET"], endpoint=self._control_faults),
            Rule("/_sandbox/requests", methods=["GET"], endpoint=self._control_requests),
            Rule("/_sandbox/hold", methods=["PUT", "GET", "DELETE"], endpoint=self._control_hold),
        ]
        self.url_map = Map(rules + list(self.routes()), strict_slashes=False, merge_slashes=False)
        self.reset()

    # ---- subclass API --------------------------------------------------------------------------
    def routes(self) -> Iterable[Rule]:
        """Werkzeug rules whose endpoint is a bound method ``(request, **args) -> Response``."""
        return []

    def reset_state(self) -> None:
        """Forget all records."""

    def seed(self, data: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
        """Store seed records per table; return how many were stored per table."""
        raise PeerError(400, "NotSupported", f"{self.name} takes no seed data")

    def records(self, table: str) -> list[dict[str, Any]]:
        """Everything stored in a table."""
        raise PeerError(404, "NotFound", f"unknown table {table!r}")

    def error(self, status: int, code: str, message: str) -> Response:
        """Render an error in this system's own format. Override per peer."""
        return json_response({"error": {"code": code, "message": message}}, status)

    # ---- helpers for handlers ------------------------------------------------------------------
    def json_body(self, request: Request) -> Any:
        raw = request.get_data(cache=True)
        try:
            return json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PeerError(
                400, "BadRequest", f"The request body is not valid JSON: {exc}"
            ) from None

    # ---- lifecycle -----------------------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self.faults = Faults()
            self._rng = random.Random(0)
            self.request_log = []
            self._release_hold()
            self.reset_state()

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        ssl_context = self.tls.server_context() if self.tls else None
        self._server = make_server(
            host, port, self, threaded=True, request_handler=_QuietHandler, ssl_context=ssl_context
        )
        self._server.daemon_threads = True
        scheme = "https" if ssl_context else "http"
        self.base_url = f"{scheme}://{host}:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"sandbox-{self.name}", daemon=True
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # ---- WSGI ----------------------------------------------------------------------------------
    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        started = time.time()
        request = Request(environ)
        request.max_content_length = self.max_body_bytes
        control = request.path.startswith("/_sandbox/")
        fault = None if control else self._draw_fault()
        hold = None if control else self._claim_hold(request)
        try:
            if hold is not None and hold.rule.phase == "before":
                hold.released.wait(hold.rule.timeoutSeconds)
                raise _DropConnection
            response = self._dispatch(request, fault, control)
            if hold is not None:
                hold.released.wait(hold.rule.timeoutSeconds)
        except _DropConnection:
            self._abort(environ, fault or ("hold" if hold is not None else "reset"), started)
            # werkzeug treats ConnectionError as a dropped client and stays quiet about it
            raise ConnectionResetError("sandbox fault: connection reset") from None
        if not control:
            with self.lock:
                self.request_log.append(
                    LoggedRequest(
                        request.method,
                        request.full_path.rstrip("?"),
                        response.status_code,
                        fault,
                        clientRequestId=request.headers.get(CLIENT_REQUEST_ID),
                        started=started,
                        retryAfter=response.headers.get("Retry-After"),
                    )
                )
        return response(environ, start_response)

    def _dispatch(self, request: Request, fault: str | None, control: bool) -> Response:
        if fault == "429":
            return self.throttled(self.faults.retryAfterSeconds)
        phase = self.faults.faultPhase
        after = fault is not None and (phase == "after" or (phase == "mixed" and self._coin()))
        if fault in ("5xx", "timeout", "reset") and not after:
            return self._fault_response(fault)
        response = self._handle(request)
        if fault in ("5xx", "timeout", "reset"):
            # the operation ran; its answer is lost
            return self._fault_response(fault)
        return response

    def _handle(self, request: Request) -> Response:
        try:
            if request.content_length and request.content_length > self.max_body_bytes:
                raise PeerError(413, "PayloadTooLarge", "The request body is too large")
            adapter = self.url_map.bind_to_environ(request.environ)
            endpoint, args = adapter.match()
            return endpoint(request, **args)
        except PeerError as exc:
            response = self.error(exc.status, exc.code, exc.message)
            response.headers.update(exc.headers)
            return response
        except NotFound:
            return self.error(404, "NotFound", f"No route matches {request.path}")
        except MethodNotAllowed:
            return self.error(
                405, "MethodNotAllowed", f"{request.method} is not allowed on {request.path}"
            )
        except HTTPException as exc:
            code = exc.code or 400
            return self.error(code, exc.name.replace(" ", ""), exc.description or exc.name)
        except Exception:
            log.exception("%s: handler failed", self.name)
            return self.error(500, "InternalServerError", "An unexpected error occurred.")

    def throttled(self, retry_after: float) -> Response:
        response = self.error(429, "TooManyRequests", "Rate limit is exceeded. Try again later.")
        response.headers["Retry-After"] = str(max(0, round(retry_after)))
        return response

    def _fault_response(self, fault: str) -> Response:
        if fault == "5xx":
            return self.error(503, "ServiceUnavailable", "The service is temporarily unavailable.")
        if fault == "timeout":
            time.sleep(self.faults.timeoutMs / 1000)
        raise _DropConnection

    def _claim_hold(self, request: Request) -> _HoldState | None:
        """The armed hold, if this request is the one it waits for."""
        with self.lock:
            hold = self._hold
            if hold is None or hold.held.is_set():
                return None
            if hold.rule.method and request.method != hold.rule.method.upper():
                return None
            path = request.full_path.rstrip("?")
            if not hold.pattern.search(path):
                return None
            hold.matched += 1
            if hold.matched != hold.rule.nth:
                return None
            hold.request = {"method": request.method, "path": path}
            hold.held.set()
            return hold

    def _release_hold(self) -> dict[str, Any] | None:
        with self.lock:
            hold, self._hold = self._hold, None
        if hold is None:
            return None
        hold.released.set()
        return hold.as_dict()

    def _coin(self) -> bool:
        with self.lock:
            return self._rng.random() < 0.5

    def _draw_fault(self) -> str | None:
        with self.lock:
            faults = self.faults
            if not faults.active:
                return None
            draw = self._rng.random()
        if faults.latencyMs:
            time.sleep(faults.latencyMs / 1000)
        for name, rate in (
            ("429", faults.rate429),
            ("5xx", faults.rate5xx),
            ("timeout", faults.rateTimeout),
            ("reset", faults.rateReset),
        ):
            if draw < rate:
                return name
            draw -= rate
        return None

    def _abort(self, environ: dict[str, Any], fault: str, started: float) -> None:
        header = "HTTP_" + CLIENT_REQUEST_ID.upper().replace("-", "_")
        with self.lock:
            self.request_log.append(
                LoggedRequest(
                    environ.get("REQUEST_METHOD", "?"),
                    environ.get("PATH_INFO", "?"),
                    0,
                    fault,
                    clientRequestId=environ.get(header),
                    started=started,
                )
            )
        sock = environ.get("werkzeug.socket")
        if isinstance(sock, socket.socket):
            try:
                # SO_LINGER 0 makes the final close send RST; shutdown ends the exchange now, even
                # though werkzeug still holds file objects on the socket.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    # ---- control surface -----------------------------------------------------------------------
    def _control_reset(self, request: Request) -> Response:
        self.reset()
        return json_response({"reset": True})

    def _control_seed(self, request: Request) -> Response:
        body = self.json_body(request)
        if not isinstance(body, dict) or not all(isinstance(v, list) for v in body.values()):
            raise PeerError(400, "BadRequest", "seed takes {table: [records]}")
        with self.lock:
            return json_response({"seeded": self.seed(body)})

    def _control_records(self, request: Request, table: str) -> Response:
        with self.lock:
            rows = self.records(table)
        return json_response({"table": table, "count": len(rows), "records": rows})

    def _control_faults(self, request: Request) -> Response:
        if request.method == "PUT":
            body = self.json_body(request) or {}
            try:
                faults = Faults.parse(body)
            except (TypeError, ValueError) as exc:
                raise PeerError(400, "BadRequest", str(exc)) from None
            with self.lock:
                self.faults = faults
                self._rng = random.Random(faults.seed)
        return json_response(asdict(self.faults))

    def _control_hold(self, request: Request) -> Response:
        if request.method == "PUT":
            try:
                rule = Hold.parse(self.json_body(request))
            except (TypeError, ValueError, re.error) as exc:
                raise PeerError(400, "BadRequest", str(exc)) from None
            self._release_hold()
            with self.lock:
                self._hold = _HoldState(rule)
                return json_response(self._hold.as_dict())
        if request.method == "DELETE":
            return json_response({"released": self._release_hold()})
        with self.lock:
            hold = self._hold
        if hold is None:
            return json_response({"armed": False})
        try:
            wait = min(max(float(request.args.get("wait") or 0), 0.0), 30.0)
        except ValueError:
            raise PeerError(400, "BadRequest", "wait must be a number of seconds") from None
        hold.held.wait(wait)
        return json_response({"armed": True, **hold.as_dict()})

    def _control_requests(self, request: Request) -> Response:
        with self.lock:
            entries = [asdict(r) for r in self.request_log]
        by_status = Counter(str(e["status"]) for e in entries)
        by_fault = Counter(e["fault"] for e in entries if e["fault"])
        return json_response(
            {"count": len(entries), "byStatus": by_status, "byFault": by_fault, "requests": entries}
        )


def json_response(
    body: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":"), default=str),
        status=status,
        headers=headers,
        content_type=content_type,
    )
