"""DataverseClient: the hub's one way to read and write Dynamics 365 Sales (Dataverse Web API v9.2).

What it relies on (MicrosoftDocs/powerapps-docs, ``powerapps-docs/developer/data-platform/``):

- Requests carry ``Accept: application/json``, ``OData-MaxVersion/OData-Version: 4.0``
  (``webapi/compose-http-requests-handle-errors.md``); errors come back as
  ``{"error": {"code": "0x...", "message": "..."}}``.
- Writes are upserts addressed by alternate key, ``PATCH <set>(<key>='v')``; ``If-Match: *``
  makes it update-only, ``If-None-Match: *`` create-only, ``If-Match: W/"<version>"`` optimistic
  (``use-upsert-insert-update-record.md``, ``webapi/perform-conditional-operations-using-web-api.md``).
- OData string literals double a single quote; every key and filter value goes through
  ``odata_literal`` and is percent-encoded, so user data cannot rewrite a request. Key values with
  ``/ # < > * % & : \\ ? +`` cannot be addressed in a URL path at all (``define-alternate-keys``),
  so such rows are read with ``$filter`` and written inside ``$batch``.
- Loads use ``UpsertMultiple`` in chunks (``bulk-operations.md``): any bad row rolls the whole
  request back on standard tables, so a failed chunk is replayed through ``$batch`` with
  ``Prefer: odata.continue-on-error`` (``webapi/execute-batch-operations-using-web-api.md``),
  which lands the good rows and gives each bad row its own error. Tables without the message
  answer 0x80040800; the client remembers that and uses ``$batch`` from then on.
- Chunks run in parallel; the width follows ``x-ms-dop-hint`` and halves on every 429 before
  growing back one step per successful chunk (``send-parallel-requests.md``, ``api-limits.md``).
  Retries and ``Retry-After`` are ``shared.http.HttpClient``'s job.
- Change tracking (``use-change-tracking-synchronize-data-external-systems.md``): ``Prefer:
  odata.track-changes`` gives a delta link; an expired or unknown token (0x80044352) raises
  ``DeltaTokenExpired`` so the caller resyncs from scratch.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import requests

from shared.errors import HubError, PermanentError, TransientError
from shared.http import HttpClient

log = logging.getLogger(__name__)

KeyValue = str | int | Decimal | bool | uuid.UUID | dt.date | dt.datetime
Key = uuid.UUID | Mapping[str, KeyValue]
"""A primary key (UUID) or an alternate key: ``{"accountnumber": "A-1"}``."""

UNSUPPORTED_MESSAGE = "0x80040800"
EXPIRED_VERSION_STAMP = "0x80044352"
LOOKUP_CHUNK = 50
"""Values per ``ids_by`` query: 50 ``or`` terms keep the URL a few KB long, far under the
32 KB Dataverse accepts."""
UNADDRESSABLE_KEY_CHARS = frozenset("/#<>*%&:\\?+")
_PATH_SAFE = "()'=,-._~!$*@;"
_QUERY_SAFE = "$()'=,-._~!*@:/;"
_CRLF = "\r\n"
_BOUNDARY_RE = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_STATUS_RE = re.compile(r"^HTTP/\d\.\d (\d{3})")


# ---- OData literals and keys --------------------------------------------------------------------


def odata_literal(value: KeyValue | None) -> str:
    """The OData v4 URL literal for a value; strings are quoted with ``'`` doubled."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("OData decimal literals must be finite")
        return format(value, "f")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("datetime literals need a time zone")
        value = value.astimezone(dt.UTC)
        # isoformat, not strftime("%Y"): glibc writes year 999 as "999", which is no OData literal.
        text = value.replace(microsecond=0, tzinfo=None).isoformat()
        if value.microsecond:
            text += f".{value.microsecond:06d}".rstrip("0")
        return text + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no OData literal for {type(value).__name__}")


def key_segment(key: Key) -> str:
    """``(<guid>)`` for a primary key, ``(k1='a',k2=2)`` for an alternate key (not URL-encoded)."""
    if isinstance(key, uuid.UUID):
        return f"({key})"
    if not key:
        raise ValueError("an alternate key needs at least one column")
    parts = []
    for name, value in key.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"not a column name: {name!r}")
        parts.append(f"{name}={odata_literal(value)}")
    return "(" + ",".join(parts) + ")"


def entity_path(entity_set: str, key: Key) -> str:
    """``accounts(accountnumber='A%2F1')``: the key segment percent-encoded for a URL path."""
    _check_name(entity_set)
    return entity_set + urllib.parse.quote(key_segment(key), safe=_PATH_SAFE)


def bind(entity_set: str, key: Key) -> str:
    """A value for ``<navigation>@odata.bind``, e.g. ``/accounts(accountnumber='A1')``."""
    return "/" + entity_path(entity_set, key)


def addressable(key: Key) -> bool:
    """Whether the key can appear in a URL path (Dataverse refuses some characters there)."""
    if isinstance(key, uuid.UUID):
        return True
    return not any(
        isinstance(v, str) and UNADDRESSABLE_KEY_CHARS.intersection(v) for v in key.values()
    )


def _check_name(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"not an entity set name: {name!r}")


def _key_filter(key: Mapping[str, KeyValue]) -> str:
    return " and ".join(f"{name} eq {odata_literal(value)}" for name, value in key.items())


# ---- errors -------------------------------------------------------------------------------------


class DataverseError(PermanentError):
    """A 4xx answer: ``code`` is Dataverse's hex code, ``dataverse_message`` its text."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str,
        dataverse_message: str,
        target: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.dataverse_message = dataverse_message
        self.target = target


class PreconditionFailed(DataverseError):
    """412: the row exists (create-only), is missing its key values, or changed (stale ETag)."""


class DeltaTokenExpired(DataverseError):
    """The delta token expired or is unknown (0x80044352): resync the table from scratch."""


def _error_from(status: int, body: bytes | str, what: str) -> DataverseError:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    code, message, target = str(status), text.strip()[:500], None
    try:
        error = json.loads(text)["error"]
        code = str(error.get("code") or status)
        message = str(error.get("message", ""))[:1000]
        target = error.get("target")
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    full = f"{what}: HTTP {status} {code}: {message}"
    kind: type[DataverseError] = DataverseError
    if code == EXPIRED_VERSION_STAMP:
        kind = DeltaTokenExpired
    elif status == 412:
        kind = PreconditionFailed
    return kind(full, status=status, code=code, dataverse_message=message, target=target)


# ---- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteOptions:
    """Optional headers on writes (``bypass-custom-business-logic.md``)."""

    bypass_business_logic: str | None = None  # "CustomSync", "CustomAsync" or both, comma-separated
    suppress_duplicate_detection: bool = False

    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.bypass_business_logic:
            headers["MSCRM.BypassBusinessLogicExecution"] = self.bypass_business_logic
        if self.suppress_duplicate_detection:
            headers["MSCRM.SuppressDuplicateDetection"] = "true"
        return headers


@dataclass(frozen=True)
class UpsertRow:
    """One row for ``upsert_many``: the key that identifies it and the columns to write."""

    key: Key
    values: Mapping[str, Any]


@dataclass(frozen=True)
class UpsertResult:
    """What a single upsert told us. ``created``/``row`` need ``return_representation``."""

    entity_id: str | None
    created: bool | None = None
    row: dict[str, Any] | None = None


@dataclass(frozen=True)
class RowResult:
    """The outcome of one row of ``upsert_many``; ``error`` is None when the row landed."""

    index: int
    key: Key
    error: HubError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class BulkResult:
    """Per-row outcomes plus how many HTTP requests the load took."""

    rows: list[RowResult]
    requests: int = 0  # every HTTP attempt, retries and throttled ones included
    bulk_requests: int = 0
    batch_requests: int = 0
    throttled: int = 0
    used_bulk: bool = False

    @property
    def landed(self) -> int:
        return sum(1 for r in self.rows if r.ok)

    @property
    def rejected(self) -> list[RowResult]:
        """Rows Dataverse refused for good (record them as rejected with their reason)."""
        return [r for r in self.rows if isinstance(r.error, PermanentError)]

    @property
    def transient(self) -> list[RowResult]:
        """Rows that failed for now (throttling, 5xx, timeouts): retry them later."""
        return [r for r in self.rows if isinstance(r.error, TransientError)]

    @property
    def requests_per_1000_rows(self) -> float:
        return 1000 * self.requests / len(self.rows) if self.rows else 0.0


@dataclass
class ChangePage:
    """One page of a change-tracking read; only the last page carries ``delta_link``."""

    upserted: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    delta_link: str | None = None


# ---- request encoding ---------------------------------------------------------------------------


def _dumps(payload: Any) -> str:
    """JSON with Decimals written as exact numbers (money must not pass through float)."""
    marker = uuid.uuid4().hex
    decimals: list[str] = []

    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            if not value.is_finite():
                raise ValueError("JSON numbers must be finite")
            decimals.append(format(value, "f"))
            return f"{marker}{len(decimals) - 1}{marker}"
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                raise ValueError("datetimes sent to Dataverse need a time zone")
            return odata_literal(value)
        if isinstance(value, dt.date):
            return value.isoformat()
        if isinstance(value, uuid.UUID):
            return str(value)
        raise TypeError(f"cannot send {type(value).__name__} to Dataverse")

    text = json.dumps(payload, default=default, separators=(",", ":"), ensure_ascii=False)
    if decimals:
        text = re.sub(f'"{marker}(\\d+){marker}"', lambda m: decimals[int(m.group(1))], text)
    return text


def _loads(body: bytes | str) -> Any:
    return json.loads(body, parse_float=Decimal)


@dataclass
class _Part:
    status: int
    headers: dict[str, str]
    body: bytes


def _parse_multipart(body: bytes, content_type: str) -> list[_Part]:
    """Flatten a ``$batch`` response (change sets included) into its operation responses."""
    match = _BOUNDARY_RE.search(content_type)
    if not match:
        raise ValueError("batch response without a boundary")
    delimiter = b"--" + (match.group(1) or match.group(2)).encode("latin-1")
    parts: list[_Part] = []
    for raw in body.split(delimiter)[1:]:
        if raw.startswith(b"--"):
            break
        chunk = raw[2:] if raw.startswith(b"\r\n") else raw
        chunk = chunk[:-2] if chunk.endswith(b"\r\n") else chunk
        mime_head, _, payload = chunk.partition(b"\r\n\r\n")
        mime = _header_block(mime_head)
        ctype = mime.get("content-type", "")
        if ctype.lower().startswith("multipart/mixed"):
            parts.extend(_parse_multipart(payload, ctype))
            continue
        status_line, _, rest = payload.partition(b"\r\n")
        status = _STATUS_RE.match(status_line.decode("latin-1"))
        if not status:
            raise ValueError("batch part without an HTTP status line")
        head, _, part_body = rest.partition(b"\r\n\r\n")
        parts.append(_Part(int(status.group(1)), _header_block(head), part_body.strip()))
    return parts


def _header_block(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("latin-1").split(_CRLF):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


# ---- parallelism --------------------------------------------------------------------------------


class _Width:
    """Additive-increase, multiplicative-decrease concurrency gate."""

    def __init__(self, ceiling: int, start: int) -> None:
        self._cond = threading.Condition()
        self.ceiling = max(1, ceiling)
        self.width = max(1, min(start, self.ceiling))
        self.in_flight = 0

    def acquire(self) -> None:
        with self._cond:
            while self.in_flight >= self.width:
                self._cond.wait()
            self.in_flight += 1

    def release(self) -> None:
        with self._cond:
            self.in_flight -= 1
            self._cond.notify_all()

    def throttled(self) -> None:
        with self._cond:
            self.width = max(1, self.width // 2)

    def succeeded(self, ceiling: int) -> None:
        with self._cond:
            self.ceiling = max(1, ceiling)
            self.width = min(self.ceiling, self.width + 1)
            self._cond.notify_all()


@dataclass(frozen=True)
class _Prepared:
    """A row checked and serialized once: its key path and its JSON body."""

    index: int
    row: UpsertRow
    path: str
    values_json: str


@dataclass
class _Counters:
    requests: int = 0
    bulk: int = 0
    batch: int = 0
    throttled: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, *, requests: int = 0, bulk: int = 0, batch: int = 0, throttled: int = 0) -> None:
        with self.lock:
            self.requests += requests
            self.bulk += bulk
            self.batch += batch
            self.throttled += throttled


class _Load:
    """The state one ``upsert_many`` call shares across its worker threads."""

    def __init__(
        self, entity_set: str, logical_name: str, options: dict[str, str], ceiling: int
    ) -> None:
        self.entity_set = entity_set
        self.logical_name = logical_name
        self.options = options
        self.counters = _Counters()
        self.width = _Width(ceiling, start=ceiling)
        self.results: dict[int, RowResult] = {}
        self._lock = threading.Lock()

    def record(self, results: list[RowResult]) -> None:
        with self._lock:
            for result in results:
                self.results[result.index] = result


# ---- the client ---------------------------------------------------------------------------------


class DataverseClient:
    """Reads and writes one Dataverse environment through ``shared.http.HttpClient``."""

    def __init__(
        self,
        http: HttpClient,
        environment_url: str,
        *,
        api_version: str = "v9.2",
        bulk_chunk_size: int = 1000,
        batch_chunk_size: int = 1000,
        max_parallel: int = 8,
        page_size: int = 5000,
        discover_bulk_support: bool = False,
    ) -> None:
        if not 1 <= bulk_chunk_size <= 5000 or not 1 <= batch_chunk_size <= 1000:
            raise ValueError("bulk chunks hold 1..5000 rows and $batch chunks 1..1000 requests")
        self.http = http
        self.environment_url = environment_url.rstrip("/")
        self.base = f"{self.environment_url}/api/data/{api_version}/"
        self.bulk_chunk_size = bulk_chunk_size
        self.batch_chunk_size = batch_chunk_size
        self.max_parallel = max(1, max_parallel)
        self.page_size = page_size
        self.discover_bulk_support = discover_bulk_support
        self.dop_hint: int | None = None
        self._bulk_support: dict[tuple[str, str], bool] = {}
        self._support_lock = threading.Lock()

    # ---- plumbing -----------------------------------------------------------------------------
    def _headers(
        self, extra: Mapping[str, str] | None = None, *, body: bool = False
    ) -> dict[str, str]:
        headers = {"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}
        if body:
            headers["Content-Type"] = "application/json; charset=utf-8"
        headers.update(extra or {})
        return headers

    def _send(
        self,
        method: str,
        url: str,
        what: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: str | bytes | None = None,
        counters: _Counters | None = None,
        width: _Width | None = None,
    ) -> requests.Response:
        """One call through HttpClient; throttling shrinks ``width`` and is counted."""

        def on_retry(response: requests.Response | None) -> None:
            throttled = response is not None and response.status_code == 429
            if counters is not None:
                counters.add(requests=1, throttled=int(throttled))
            if throttled and width is not None:
                width.throttled()

        payload = data.encode("utf-8") if isinstance(data, str) else data
        try:
            response = self.http.request(
                method, url, headers=dict(headers or {}), data=payload, on_retry=on_retry
            )
        except TransientError as exc:
            if counters is not None:
                counters.add(requests=1)
            raise TransientError(f"{what}: {exc}", retry_after=exc.retry_after) from None
        if counters is not None:
            counters.add(requests=1)
        hint = response.headers.get("x-ms-dop-hint")
        if hint and hint.isdigit():
            self.dop_hint = max(1, int(hint))
        return response

    def _check(self, response: requests.Response, what: str) -> None:
        if response.status_code >= 400:
            raise _error_from(response.status_code, response.content, what)

    def _own(self, link: str) -> str:
        """Follow only links into this environment's API (never a redirect elsewhere)."""
        if not link.startswith(self.base):
            raise PermanentError("dataverse: a paging link points outside the environment")
        return link

    def _query_string(self, params: Sequence[tuple[str, str]]) -> str:
        return "&".join(f"{k}={urllib.parse.quote(v, safe=_QUERY_SAFE)}" for k, v in params)

    # ---- single records -----------------------------------------------------------------------
    def get(
        self, entity_set: str, key: Key, *, select: Sequence[str] | None = None
    ) -> dict[str, Any] | None:
        """The row with this key, or None when there is none."""
        what = f"dataverse GET {entity_set}"
        if not isinstance(key, uuid.UUID) and not addressable(key):
            rows = self.query(entity_set, select=select, filter=_key_filter(key), top=1)
            return next(iter(rows), None)
        params = [("$select", ",".join(select))] if select else []
        url = self.base + entity_path(entity_set, key)
        if params:
            url += "?" + self._query_string(params)
        response = self._send("GET", url, what, headers=self._headers())
        if response.status_code == 404:
            return None
        self._check(response, what)
        row: dict[str, Any] = _loads(response.content)
        return row

    def create(
        self, entity_set: str, values: Mapping[str, Any], *, options: WriteOptions | None = None
    ) -> str:
        """POST a new row; returns its id. Prefer ``upsert`` for anything that may be retried."""
        what = f"dataverse POST {entity_set}"
        _check_name(entity_set)
        headers = self._headers((options or WriteOptions()).headers(), body=True)
        response = self._send(
            "POST", self.base + entity_set, what, headers=headers, data=_dumps(values)
        )
        self._check(response, what)
        entity_id = _id_from(response.headers.get("OData-EntityId", ""))
        if entity_id is None:
            raise PermanentError(f"{what}: no OData-EntityId in the answer")
        return entity_id

    def upsert(
        self,
        entity_set: str,
        key: Key,
        values: Mapping[str, Any],
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
        return_representation: bool = False,
        options: WriteOptions | None = None,
    ) -> UpsertResult:
        """Create or update by key. ``if_match="*"`` = update only; a W/"n" ETag = optimistic;
        ``if_none_match`` = create only. Conflicts raise ``PreconditionFailed``."""
        what = f"dataverse PATCH {entity_set}"
        headers = self._headers((options or WriteOptions()).headers(), body=True)
        if if_match is not None:
            headers["If-Match"] = if_match
        if if_none_match:
            headers["If-None-Match"] = "*"
        if return_representation:
            headers["Prefer"] = "return=representation"
        url = self.base + entity_path(entity_set, key)
        if not addressable(key):
            part = self._single_via_batch("PATCH", url, headers, _dumps(values), what)
            status, part_headers, body = part.status, part.headers, part.body
        else:
            response = self._send("PATCH", url, what, headers=headers, data=_dumps(values))
            self._check(response, what)
            status, part_headers, body = (
                response.status_code,
                dict(response.headers),
                response.content,
            )
        lowered = {k.lower(): v for k, v in part_headers.items()}
        entity_id = _id_from(lowered.get("odata-entityid", ""))
        if return_representation and body:
            row: dict[str, Any] = _loads(body)
            return UpsertResult(entity_id, status == 201, row)
        return UpsertResult(entity_id)

    def delete(self, entity_set: str, key: Key, *, if_match: str | None = None) -> bool:
        """Delete by key; False when there was nothing to delete."""
        what = f"dataverse DELETE {entity_set}"
        headers = self._headers()
        if if_match is not None:
            headers["If-Match"] = if_match
        url = self.base + entity_path(entity_set, key)
        if not addressable(key):
            try:
                self._single_via_batch("DELETE", url, headers, None, what)
            except DataverseError as exc:
                if exc.status == 404:
                    return False
                raise
            return True
        response = self._send("DELETE", url, what, headers=headers)
        if response.status_code == 404:
            return False
        self._check(response, what)
        return True

    def _single_via_batch(
        self, method: str, url: str, headers: Mapping[str, str], body: str | None, what: str
    ) -> _Part:
        parts = self._batch([(method, url, dict(headers), body)], what, continue_on_error=False)
        part = parts[0]
        if part.status >= 400:
            raise _error_from(part.status, part.body, what)
        return part

    # ---- queries ------------------------------------------------------------------------------
    def query(
        self,
        entity_set: str,
        *,
        select: Sequence[str] | None = None,
        filter: str | None = None,
        orderby: str | None = None,
        top: int | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Rows matching an OData query, following ``@odata.nextLink`` page by page.

        ``filter`` is OData text: build its values with ``odata_literal``.
        """
        _check_name(entity_set)
        params: list[tuple[str, str]] = []
        if select:
            params.append(("$select", ",".join(select)))
        if filter:
            params.append(("$filter", filter))
        if orderby:
            params.append(("$orderby", orderby))
        if top is not None:
            params.append(("$top", str(int(top))))
        url: str | None = (
            self.base + entity_set + ("?" + self._query_string(params) if params else "")
        )
        headers = self._headers({"Prefer": f"odata.maxpagesize={page_size or self.page_size}"})
        what = f"dataverse GET {entity_set}"
        while url is not None:
            response = self._send("GET", url, what, headers=headers)
            self._check(response, what)
            page = _loads(response.content)
            yield from page.get("value", [])
            link = page.get("@odata.nextLink")
            url = self._own(link) if link else None

    def ids_by(
        self, entity_set: str, column: str, values: Iterable[str], *, id_column: str
    ) -> dict[str, str]:
        """The ids of the rows whose ``column`` is one of ``values``, by value; a value without a
        row is absent. One query per ``LOOKUP_CHUNK`` values (``column eq … or …``) instead of
        one GET per value: a batch that binds thousands of lookups stays far inside the service
        protection limits."""
        wanted = sorted({v for v in values if v})
        found: dict[str, str] = {}
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            chunk = wanted[start : start + LOOKUP_CHUNK]
            text = " or ".join(f"{column} eq {odata_literal(v)}" for v in chunk)
            # Dataverse compares strings case-insensitively, as the one-by-one GET would match.
            ids = {
                str(row[column]).casefold(): str(row[id_column])
                for row in self.query(entity_set, select=[id_column, column], filter=text)
                if row.get(column) is not None and row.get(id_column)
            }
            found.update((v, ids[v.casefold()]) for v in chunk if v.casefold() in ids)
        return found

    def whoami(self) -> dict[str, Any]:
        """The caller's UserId, BusinessUnitId and OrganizationId (a cheap connectivity check)."""
        response = self._send(
            "GET", self.base + "WhoAmI", "dataverse WhoAmI", headers=self._headers()
        )
        self._check(response, "dataverse WhoAmI")
        result: dict[str, Any] = _loads(response.content)
        return result

    # ---- change tracking ----------------------------------------------------------------------
    def iter_changes(
        self,
        entity_set: str,
        select: Sequence[str],
        delta_link: str | None = None,
        *,
        page_size: int | None = None,
    ) -> Iterator[ChangePage]:
        """Pages of changes: everything on the first call, then only changes since ``delta_link``.

        Raises ``DeltaTokenExpired`` when Dataverse no longer knows the token.
        """
        _check_name(entity_set)
        if delta_link is not None:
            url: str | None = self._own(delta_link)
        else:
            url = self.base + entity_set + "?" + self._query_string([("$select", ",".join(select))])
        headers = self._headers(
            {"Prefer": f"odata.track-changes,odata.maxpagesize={page_size or self.page_size}"}
        )
        what = f"dataverse changes {entity_set}"
        while url is not None:
            response = self._send("GET", url, what, headers=headers)
            self._check(response, what)
            body = _loads(response.content)
            page = ChangePage()
            for entry in body.get("value", []):
                if "$deletedEntity" in str(entry.get("@odata.context", "")):
                    page.deleted.append(str(entry["id"]))
                else:
                    page.upserted.append(entry)
            link = body.get("@odata.nextLink")
            url = self._own(link) if link else None
            if url is None:
                page.delta_link = body.get("@odata.deltaLink")
                if page.delta_link is None:
                    raise PermanentError(f"{what}: the last page carried no delta link")
            yield page

    def changes(
        self, entity_set: str, select: Sequence[str], delta_link: str | None = None
    ) -> ChangePage:
        """All pages of ``iter_changes`` in one ``ChangePage`` (its ``delta_link`` is the new one)."""
        total = ChangePage()
        for page in self.iter_changes(entity_set, select, delta_link):
            total.upserted.extend(page.upserted)
            total.deleted.extend(page.deleted)
            total.delta_link = page.delta_link
        return total

    # ---- bulk ---------------------------------------------------------------------------------
    def supports_message(self, logical_name: str, message: str) -> bool:
        """Ask ``sdkmessagefilters`` whether a table supports a message (bulk-operations.md)."""
        cached = self._bulk_support.get((logical_name, message))
        if cached is not None:
            return cached
        params = [
            ("$select", "sdkmessagefilterid"),
            ("$filter", "sdkmessageid/name eq @message and primaryobjecttypecode eq @table"),
            ("@message", odata_literal(message)),
            ("@table", odata_literal(logical_name)),
        ]
        url = self.base + "sdkmessagefilters?" + self._query_string(params)
        response = self._send(
            "GET", url, "dataverse GET sdkmessagefilters", headers=self._headers()
        )
        self._check(response, "dataverse GET sdkmessagefilters")
        supported = bool(_loads(response.content).get("value"))
        with self._support_lock:
            self._bulk_support[(logical_name, message)] = supported
        return supported

    def upsert_many(
        self,
        entity_set: str,
        logical_name: str,
        rows: Sequence[UpsertRow],
        *,
        options: WriteOptions | None = None,
    ) -> BulkResult:
        """Upsert rows by key with as few requests as possible; returns one result per row.

        Good rows land even when others are bad: a bad row gets its Dataverse error as a
        ``DataverseError`` (permanent); rows of a chunk that kept failing transiently get a
        ``TransientError``. Nothing is dropped.
        """
        _check_name(entity_set)
        _check_name(logical_name)
        load = _Load(
            entity_set, logical_name, (options or WriteOptions()).headers(), self._ceiling()
        )
        prepared: list[_Prepared] = []
        for index, row in enumerate(rows):
            try:
                prepared.append(
                    _Prepared(
                        index, row, entity_path(entity_set, row.key), _dumps(dict(row.values))
                    )
                )
            except (TypeError, ValueError) as exc:
                # a value JSON cannot carry (or a malformed key) is bad data, not a reason to stop
                load.record(
                    [RowResult(index, row.key, PermanentError(f"dataverse {entity_set}: {exc}"))]
                )
        message = (logical_name, "UpsertMultiple")
        support = self._bulk_support.get(message)
        if support is None and self.discover_bulk_support and prepared:
            support = self.supports_message(logical_name, "UpsertMultiple")
        if support is not False:
            chunks = _chunks(prepared, self.bulk_chunk_size)
            if support is None and chunks:
                # learn from one chunk before fanning out: an unsupported table answers at once
                load.record(self._bulk_chunk(load, chunks.pop(0)))
            if self._bulk_support.get(message) is not False:
                self._run_parallel(load, chunks, self._bulk_chunk)
        remaining = [p for p in prepared if p.index not in load.results]
        self._run_parallel(load, _chunks(remaining, self.batch_chunk_size), self._batch_chunk)
        counters = load.counters
        return BulkResult(
            rows=[load.results[i] for i in range(len(rows))],
            requests=counters.requests,
            bulk_requests=counters.bulk,
            batch_requests=counters.batch,
            throttled=counters.throttled,
            used_bulk=bool(self._bulk_support.get(message)),
        )

    def _ceiling(self) -> int:
        return min(self.max_parallel, self.dop_hint or 2)

    def _run_parallel(
        self,
        load: _Load,
        chunks: list[list[_Prepared]],
        work: Callable[[_Load, list[_Prepared]], list[RowResult]],
    ) -> None:
        if not chunks:
            return

        def gated(chunk: list[_Prepared]) -> list[RowResult]:
            load.width.acquire()
            try:
                return work(load, chunk)
            finally:
                load.width.release()

        workers = min(self.max_parallel, len(chunks))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dataverse") as pool:
            for outcome in pool.map(gated, chunks):
                load.record(outcome)

    def _bulk_chunk(self, load: _Load, chunk: list[_Prepared]) -> list[RowResult]:
        message = (load.logical_name, "UpsertMultiple")
        if self._bulk_support.get(message) is False:
            return self._batch_chunk(load, chunk)
        what = f"dataverse UpsertMultiple {load.entity_set}"
        head = f'{{"@odata.type":{json.dumps("Microsoft.Dynamics.CRM." + load.logical_name)},"@odata.id":'
        targets = ",".join(
            head + json.dumps(p.path) + ("," + p.values_json[1:] if p.values_json != "{}" else "}")
            for p in chunk
        )
        url = f"{self.base}{load.entity_set}/Microsoft.Dynamics.CRM.UpsertMultiple"
        load.counters.add(bulk=1)
        try:
            response = self._send(
                "POST",
                url,
                what,
                headers=self._headers(load.options, body=True),
                data='{"Targets":[' + targets + "]}",
                counters=load.counters,
                width=load.width,
            )
        except TransientError as exc:
            return [RowResult(p.index, p.row.key, exc) for p in chunk]
        if response.status_code < 400:
            with self._support_lock:
                self._bulk_support[message] = True
            load.width.succeeded(self._ceiling())
            return [RowResult(p.index, p.row.key) for p in chunk]
        error = _error_from(response.status_code, response.content, what)
        with self._support_lock:
            self._bulk_support[message] = error.code != UNSUPPORTED_MESSAGE
        if error.code == UNSUPPORTED_MESSAGE:
            log.info("dataverse: %s has no UpsertMultiple; using $batch", load.logical_name)
        else:
            # standard tables roll the whole request back for one bad row: replay the chunk
            # with continue-on-error so the good rows land and each bad row gets its own error
            log.warning("%s rolled back (%s); isolating bad rows via $batch", what, error.code)
        return self._batch_chunk(load, chunk)

    def _batch_chunk(self, load: _Load, chunk: list[_Prepared]) -> list[RowResult]:
        what = f"dataverse $batch {load.entity_set}"
        headers = self._headers(load.options, body=True)
        operations = [("PATCH", self.base + p.path, headers, p.values_json) for p in chunk]
        try:
            parts = self._batch(
                operations, what, continue_on_error=True, counters=load.counters, width=load.width
            )
        except HubError as exc:
            return [RowResult(p.index, p.row.key, exc) for p in chunk]
        if len(parts) != len(chunk):
            mismatch = PermanentError(f"{what}: {len(parts)} answers for {len(chunk)} requests")
            return [RowResult(p.index, p.row.key, mismatch) for p in chunk]
        load.width.succeeded(self._ceiling())
        results = []
        for prepared, part in zip(chunk, parts, strict=True):
            failure: HubError | None = None
            if part.status >= 400:
                failure = _error_from(part.status, part.body, f"dataverse PATCH {load.entity_set}")
            results.append(RowResult(prepared.index, prepared.row.key, failure))
        return results

    def _batch(
        self,
        operations: Sequence[tuple[str, str, Mapping[str, str], str | None]],
        what: str,
        *,
        continue_on_error: bool,
        counters: _Counters | None = None,
        width: _Width | None = None,
    ) -> list[_Part]:
        """POST one ``$batch`` of independent operations (no change set: each stands alone)."""
        boundary = f"batch_{uuid.uuid4()}"
        lines: list[str] = []
        for method, url, headers, body in operations:
            lines += [
                f"--{boundary}",
                "Content-Type: application/http",
                "Content-Transfer-Encoding: binary",
                "",
            ]
            lines.append(f"{method} {url} HTTP/1.1")
            lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("accept",)]
            lines += ["", body or ""]
        lines.append(f"--{boundary}--")
        payload = _CRLF.join(lines) + _CRLF
        outer = self._headers({"Content-Type": f"multipart/mixed; boundary={boundary}"})
        if continue_on_error:
            outer["Prefer"] = "odata.continue-on-error"
        if counters is not None:
            counters.add(batch=1)
        response = self._send(
            "POST",
            self.base + "$batch",
            what,
            headers=outer,
            data=payload,
            counters=counters,
            width=width,
        )
        content_type = response.headers.get("Content-Type", "")
        if not content_type.lower().startswith("multipart/mixed"):
            self._check(response, what)
            raise PermanentError(f"{what}: HTTP {response.status_code} without a multipart answer")
        try:
            return _parse_multipart(response.content, content_type)
        except ValueError as exc:
            raise PermanentError(f"{what}: unreadable batch answer ({exc})") from None


def _chunks(items: list[_Prepared], size: int) -> list[list[_Prepared]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


_GUID_IN_PARENS = re.compile(
    r"\(([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\)$"
)


def _id_from(entity_url: str) -> str | None:
    match = _GUID_IN_PARENS.search(entity_url.strip())
    return match.group(1).lower() if match else None
