"""Dev HTTP adapter: serves the app's HTTP-triggered functions on 127.0.0.1 without Core Tools.

A local development tool, not a host. It reads each function's own binding metadata — route
template (with ``{param}``, ``{param:int}``, ``{param?}`` and ``{*rest}``), methods and authLevel —
builds a real ``func.HttpRequest`` and maps the ``func.HttpResponse`` back, the way the Functions
host does. Function keys are checked from ``x-functions-key`` or ``?code=``. Output bindings set by
a function are handed to ``on_output`` (the sandbox routes Service Bus outputs to the local
dispatcher). It holds no trigger logic of its own.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from sandbox.functions import Binding, IndexedFunction, invoke

log = logging.getLogger(__name__)

# The Functions host refuses bodies over 100 MB (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT default).
HOST_BODY_LIMIT = 104_857_600
OutputSink = Callable[[IndexedFunction, Binding, Any], None]


@dataclass
class Route:
    function: IndexedFunction
    pattern: re.Pattern[str]
    methods: frozenset[str]
    auth_level: str
    converters: dict[str, Callable[[str], Any]]


def compile_template(template: str) -> tuple[re.Pattern[str], dict[str, Callable[[str], Any]]]:
    """Compile an ASP.NET-style route template to a regex with named groups."""
    converters: dict[str, Callable[[str], Any]] = {}
    parts = []
    for segment in template.strip("/").split("/"):
        match = re.fullmatch(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?(\?)?\}", segment)
        if not match:
            parts.append("/" + re.escape(segment))
            continue
        catch_all, name, constraint, optional = match.groups()
        body = r".*" if catch_all else (r"-?\d+" if constraint in ("int", "long") else r"[^/]+")
        if constraint in ("int", "long"):
            converters[name] = int
        group = f"/(?P<{name}>{body})"
        parts.append(f"(?:{group})?" if optional or catch_all else group)
    return re.compile("^" + "".join(parts) + "/?$", re.IGNORECASE), converters


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


class DevHost:
    """Serves HTTP-triggered functions; see the module docstring."""

    def __init__(
        self,
        functions: list[IndexedFunction],
        *,
        function_key: str | None = None,
        master_key: str | None = None,
        on_output: OutputSink | None = None,
        route_prefix: str = "api",
    ) -> None:
        self.function_key = function_key or secrets.token_urlsafe(32)
        self.master_key = master_key or secrets.token_urlsafe(32)
        self.on_output = on_output
        self.prefix = "/" + route_prefix.strip("/") if route_prefix else ""
        self.routes: list[Route] = []
        for function in functions:
            trigger = function.trigger
            if trigger.type != "httpTrigger":
                continue
            pattern, converters = compile_template(trigger.get("route") or function.name)
            methods = frozenset(m.upper() for m in (trigger.get("methods") or [])) or frozenset(
                {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
            )
            level = str(trigger.get("authLevel", "FUNCTION")).upper()
            self.routes.append(Route(function, pattern, methods, level, converters))
        # Literal segments beat parameters, as in ASP.NET routing: more literal characters first.
        self.routes.sort(key=lambda r: -len(re.sub(r"\(\?P<[^>]+>[^)]*\)", "", r.pattern.pattern)))
        self._server: BaseWSGIServer | None = None
        self.base_url = ""

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._server = make_server(host, port, self, threaded=True, request_handler=_Quiet)
        self._server.daemon_threads = True
        self.base_url = f"http://{host}:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, name="devhost", daemon=True).start()
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _authorised(self, route: Route, request: Request) -> bool:
        if route.auth_level == "ANONYMOUS":
            return True
        key = request.headers.get("x-functions-key") or request.args.get("code") or ""
        allowed = (
            [self.master_key]
            if route.auth_level == "ADMIN"
            else [self.function_key, self.master_key]
        )
        return any(secrets.compare_digest(key.encode(), k.encode()) for k in allowed)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        if not path.lower().startswith(self.prefix.lower()):
            return None
        rest = path[len(self.prefix) :] or "/"
        for route in self.routes:
            found = route.pattern.match(rest)
            if found and method.upper() in route.methods:
                return route, {k: v for k, v in found.groupdict().items() if v is not None}
        return None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        response = self.handle(request)
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        found = self.match(request.method, request.path)
        if found is None:
            return Response(status=404)
        route, route_params = found
        if not self._authorised(route, request):
            return Response(status=401)
        if request.content_length is not None and request.content_length > HOST_BODY_LIMIT:
            return Response(status=413)
        # Read at most one byte past the limit, so a chunked body can't exhaust memory.
        body = request.stream.read(HOST_BODY_LIMIT + 1)
        if len(body) > HOST_BODY_LIMIT:
            return Response(status=413)
        http_request = func.HttpRequest(
            method=request.method,
            url=request.url,
            headers=dict(request.headers.items()),
            params=dict(request.args.items()),
            route_params=route_params,
            body=body,
        )
        try:
            invocation = invoke(route.function, http_request)
        except Exception:
            log.exception("function %s failed", route.function.name)
            return Response(status=500)
        if self.on_output is not None:
            for binding in route.function.outputs:
                if binding.name in invocation.outputs:
                    self.on_output(route.function, binding, invocation.outputs[binding.name])
        return to_werkzeug(invocation.result)


def to_werkzeug(result: Any) -> Response:
    if result is None:
        return Response(status=204)
    if not isinstance(result, func.HttpResponse):
        raise TypeError(f"HTTP function returned {type(result).__name__}, not HttpResponse")
    headers: Mapping[str, str] = dict(result.headers)
    response = Response(result.get_body(), status=result.status_code, headers=dict(headers))
    if "content-type" not in {k.lower() for k in headers} and result.mimetype:
        response.content_type = f"{result.mimetype}; charset={result.charset or 'utf-8'}"
    return response
