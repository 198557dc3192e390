"""The Contoso Legacy Order System (LOS) gateway for the sandbox.

Implements ``docs/mainframe-api.md`` exactly (that document is the contract): the token endpoint,
changed-only listings of ``orders``, ``orderlines``, ``inventory`` and ``customers`` with
``changedSince`` (strictly greater), ``pageSize`` (at most ``page_size_max``) and ``pageToken``,
stable ``LSTUPD``-then-key ordering, ``ASOF`` and the legacy ``{"RC", "REASON"}`` error bodies.

Records are stored exactly as seeded (upper-case fields, padded strings); the peer never pads or
reformats them, so the hub sees what the copybooks produce.

Control surface extras (sandbox only):

- seed ``{"orders": [...], "orderlines": [...], "inventory": [...], "customers": [...]}`` with
  legacy records. ``LSTUPD`` comes from the seed; a record without one is stamped with now.
  Orders, order lines and inventory are keyed files: seeding a key again replaces the record.
  The customer file does not enforce unique keys (customers were keyed in by hand, and the
  same ``CUSTNO`` was given twice), so every seeded customer record is kept and listed, two
  records with one ``CUSTNO`` included; listings order them by ``LSTUPD``, key, then the order
  they were written in.
- seed ``{"clients": [{"clientId", "clientSecret"}]}`` registers API clients (kept across resets,
  like app registrations).
- seed ``{"settings": [{"tokenLifetimeSeconds": 300, "now": "YYYYMMDDHHMMSS" | null}]}``: token
  lifetime, and an optional pinned business clock (``LSTUPD`` stamps and ``ASOF``) so tests can
  place changes either side of a watermark without sleeping.
- ``POST /_sandbox/touch`` ``{"<entity>": [{<key fields>, <changed fields>...}]}``: writes as the
  mainframe's own transactions would, merging the fields into the record with that key (the
  first one written, where a customer number is held twice; creating it when new) and
  stamping ``LSTUPD`` with now.
- ``POST /_sandbox/tokens/expire``: every issued token expires at once (tests of refresh-on-401).
- ``records/<entity>``, ``records/clients`` (ids only), ``records/tokens`` (no token values).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from sandbox import secrets_registry
from sandbox.entra import bearer
from sandbox.peer import Peer, PeerError, json_response
from sandbox.tls import Tls

ENTITIES: dict[str, tuple[str, ...]] = {
    "orders": ("ORDNO",),
    "orderlines": ("ORDNO", "LINENO"),
    "inventory": ("PLANT", "ITEMNO"),
    "customers": ("CUSTNO",),
}
# Files whose key is not unique: a record with a key already held is kept beside it.
DUPLICATE_KEYS_ALLOWED = frozenset({"customers"})
TIMESTAMP_FORMAT = "%Y%m%d%H%M%S"
DEFAULT_PAGE_SIZE = 500
DEFAULT_TOKEN_LIFETIME = 300
_FIELD = re.compile(r"^[A-Z][A-Z0-9]{0,7}$")
_TIMESTAMP = re.compile(r"^\d{14}$")
_MAX_CURSORS = 10_000
# Return codes of the LOS gateway: 04 not found, 08 security, 12 request error, 16 system busy,
# 20 abend. Errors raised by the shared peer base (routing, faults) are mapped by status.
_RC_BY_STATUS = {
    400: "12",
    401: "08",
    403: "08",
    404: "04",
    405: "12",
    413: "12",
    429: "16",
    503: "16",
}


# Where a record is held: its key and, for a key held more than once, which of them (0 first).
_Slot = tuple[tuple[str, ...], int]
# Listing order: LSTUPD, key, occurrence (14-digit stamps and fixed-width keys sort as strings).
_Position = tuple[str, tuple[str, ...], int]


@dataclass(frozen=True)
class _Cursor:
    entity: str
    since: str | None
    asof: str
    after: _Position


@dataclass
class _Token:
    client_id: str
    issued_at: float
    expires_at: float


def format_timestamp(value: dt.datetime) -> str:
    """``YYYYMMDDHHMMSS`` in UTC."""
    return value.astimezone(dt.UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(value: str) -> dt.datetime:
    """Parse ``YYYYMMDDHHMMSS`` (UTC); raises ValueError when it is not one."""
    if not _TIMESTAMP.match(value):
        raise ValueError(f"not a YYYYMMDDHHMMSS timestamp: {value!r}")
    return dt.datetime.strptime(value, TIMESTAMP_FORMAT).replace(tzinfo=dt.UTC)


class MainframePeer(Peer):
    """The LOS gateway: client-credential tokens and changed-only listings."""

    name = "mainframe"

    def __init__(
        self,
        *,
        tls: Tls | None = None,
        page_size_max: int = 1000,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.page_size_max = page_size_max
        self._wall_clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.pinned_now: dt.datetime | None = None
        self.token_lifetime_seconds = DEFAULT_TOKEN_LIFETIME
        self.clients: dict[str, str] = {}
        self.tables: dict[str, dict[_Slot, dict[str, str]]] = {}
        self.tokens: dict[str, _Token] = {}
        self.cursors: OrderedDict[str, _Cursor] = OrderedDict()
        super().__init__(tls=tls)

    # ---- peer API ------------------------------------------------------------------------------
    def routes(self) -> Iterable[Rule]:
        return [
            Rule("/auth/token", methods=["POST"], endpoint=self._token),
            Rule("/los/v1/<entity>", methods=["GET"], endpoint=self._list),
            Rule("/_sandbox/touch", methods=["POST"], endpoint=self._control_touch),
            Rule("/_sandbox/tokens/expire", methods=["POST"], endpoint=self._control_expire),
        ]

    def reset_state(self) -> None:
        self.tables = {entity: {} for entity in ENTITIES}
        self.tokens = {}
        self.cursors = OrderedDict()
        self.pinned_now = None
        self.token_lifetime_seconds = DEFAULT_TOKEN_LIFETIME

    def seed(self, data: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for table, rows in data.items():
            if table == "clients":
                for row in rows:
                    if (
                        not isinstance(row, dict)
                        or not row.get("clientId")
                        or not row.get("clientSecret")
                    ):
                        raise PeerError(400, "12", "CLIENTS NEED CLIENTID AND CLIENTSECRET")
                    self.register_client(str(row["clientId"]), str(row["clientSecret"]))
            elif table == "settings":
                for row in rows:
                    self._apply_settings(row)
            elif table in ENTITIES:
                now = self.now_stamp()
                for row in rows:
                    record = _validate_record(table, row)
                    record.setdefault("LSTUPD", now)
                    self._store(table, record)
            else:
                raise PeerError(400, "12", f"UNKNOWN TABLE {table}")
            counts[table] = len(rows)
        return counts

    def records(self, table: str) -> list[dict[str, Any]]:
        if table in ENTITIES:
            return [dict(r) for _, r in _ordered(self.tables[table])]
        if table == "clients":
            return [{"clientId": c} for c in self.clients]
        if table == "tokens":
            return [
                {"clientId": t.client_id, "issuedAt": t.issued_at, "expiresAt": t.expires_at}
                for t in self.tokens.values()
            ]
        raise PeerError(404, "04", "NO SUCH FILE")

    def error(self, status: int, code: str, message: str) -> Response:
        rc = code if code.isdigit() else _RC_BY_STATUS.get(status, "20" if status >= 500 else "12")
        return json_response({"RC": rc, "REASON": message.upper()}, status)

    # ---- python API ----------------------------------------------------------------------------
    def register_client(self, client_id: str, secret: str) -> None:
        """Register (or re-key) an API client; rotating a secret is registering it again."""
        secrets_registry.record("mainframe-client-secret", secret)
        with self.lock:
            self.clients[client_id] = secret

    def now(self) -> dt.datetime:
        """The business clock: pinned through settings, else the wall clock (UTC)."""
        return self.pinned_now or self._wall_clock()

    def now_stamp(self) -> str:
        return format_timestamp(self.now())

    def touch(self, entity: str, changes: list[dict[str, Any]]) -> list[dict[str, str]]:
        """Apply changes as mainframe transactions: merge by key, stamp ``LSTUPD`` with now."""
        if entity not in ENTITIES:
            raise PeerError(404, "04", "NO SUCH FILE")
        touched = []
        with self.lock:
            now = self.now_stamp()
            for change in changes:
                fields = _validate_record(entity, change)
                record = self.tables[entity].setdefault((_key(entity, fields), 0), {})
                record.update(fields)
                record["LSTUPD"] = now
                touched.append(dict(record))
        return touched

    def expire_tokens(self) -> int:
        """Expire every issued token now; returns how many there were."""
        with self.lock:
            for token in self.tokens.values():
                token.expires_at = min(token.expires_at, time.time() - 1)
            return len(self.tokens)

    def _store(self, entity: str, record: dict[str, str]) -> None:
        """Write a seeded record: beside others with its key where the file allows that,
        else in place of the one with its key."""
        key = _key(entity, record)
        occurrence = 0
        if entity in DUPLICATE_KEYS_ALLOWED:
            while (key, occurrence) in self.tables[entity]:
                occurrence += 1
        self.tables[entity][(key, occurrence)] = record

    # ---- handlers ------------------------------------------------------------------------------
    def _token(self, request: Request) -> Response:
        form = request.form
        if form.get("grant_type") != "client_credentials":
            raise PeerError(400, "12", "UNSUPPORTED GRANT TYPE")
        client_id = form.get("client_id") or ""
        secret = form.get("client_secret") or ""
        with self.lock:
            expected = self.clients.get(client_id)
        if expected is None or not secrets.compare_digest(secret.encode(), expected.encode()):
            raise PeerError(401, "08", "INVALID CLIENT CREDENTIALS")
        token = secrets.token_urlsafe(32)
        secrets_registry.record("mainframe-token", token)
        now = time.time()
        lifetime = self.token_lifetime_seconds
        with self.lock:
            self.tokens[token] = _Token(client_id, now, now + lifetime)
        return json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}
        )

    def _authorize(self, request: Request) -> None:
        token = bearer(request)
        with self.lock:
            issued = self.tokens.get(token) if token else None
        headers = {"WWW-Authenticate": 'Bearer realm="LOS"'}
        if issued is None:
            raise PeerError(401, "08", "TOKEN INVALID", headers)
        if time.time() >= issued.expires_at:
            raise PeerError(401, "08", "TOKEN EXPIRED", headers)

    def _list(self, request: Request, entity: str) -> Response:
        self._authorize(request)
        if entity not in ENTITIES:
            raise PeerError(404, "04", "NO SUCH FILE")
        page_size = self._page_size(request.args.get("pageSize"))
        token = request.args.get("pageToken")
        with self.lock:
            if token:
                cursor = self.cursors.get(token)
                if cursor is None or cursor.entity != entity:
                    raise PeerError(400, "12", "INVALID PAGETOKEN")
                since, asof, after = cursor.since, cursor.asof, cursor.after
            else:
                since = _changed_since(request.args.get("changedSince"))
                asof, after = self.now_stamp(), None
            rows = [
                (position, r)
                for position, r in _ordered(self.tables[entity])
                if (since is None or r["LSTUPD"] > since) and (after is None or position > after)
            ]
            page = [dict(r) for _, r in rows[:page_size]]
            next_token = None
            if len(rows) > page_size:
                next_token = secrets.token_urlsafe(18)
                last = rows[page_size - 1][0]
                self.cursors[next_token] = _Cursor(entity, since, asof, last)
                while len(self.cursors) > _MAX_CURSORS:
                    self.cursors.popitem(last=False)
        return json_response({"RECORDS": page, "NEXTPAGE": next_token, "ASOF": asof})

    def _page_size(self, raw: str | None) -> int:
        if raw is None or raw == "":
            return min(DEFAULT_PAGE_SIZE, self.page_size_max)
        if not raw.isdigit() or int(raw) < 1:
            raise PeerError(400, "12", "INVALID PAGESIZE")
        if int(raw) > self.page_size_max:
            raise PeerError(400, "12", f"PAGESIZE > {self.page_size_max}")
        return int(raw)

    def _apply_settings(self, row: dict[str, Any]) -> None:
        unknown = set(row) - {"tokenLifetimeSeconds", "now"}
        if unknown:
            raise PeerError(400, "12", f"UNKNOWN SETTINGS {sorted(unknown)}")
        if "tokenLifetimeSeconds" in row:
            lifetime = row["tokenLifetimeSeconds"]
            if not isinstance(lifetime, int) or lifetime < 1:
                raise PeerError(400, "12", "TOKENLIFETIMESECONDS MUST BE A POSITIVE INTEGER")
            self.token_lifetime_seconds = lifetime
        if "now" in row:
            try:
                self.pinned_now = None if row["now"] is None else parse_timestamp(str(row["now"]))
            except ValueError:
                raise PeerError(400, "12", "NOW MUST BE YYYYMMDDHHMMSS") from None

    # ---- control extras ------------------------------------------------------------------------
    def _control_touch(self, request: Request) -> Response:
        body = self.json_body(request)
        if not isinstance(body, dict) or not all(isinstance(v, list) for v in body.values()):
            raise PeerError(400, "12", "TOUCH TAKES {ENTITY: [CHANGES]}")
        touched = {entity: self.touch(entity, changes) for entity, changes in body.items()}
        return json_response(
            {"touched": {e: len(rows) for e, rows in touched.items()}, "records": touched}
        )

    def _control_expire(self, request: Request) -> Response:
        return json_response({"expired": self.expire_tokens()})


def _validate_record(entity: str, row: Any) -> dict[str, str]:
    if not isinstance(row, dict):
        raise PeerError(400, "12", f"{entity.upper()} RECORDS MUST BE OBJECTS")
    record: dict[str, str] = {}
    for name, value in row.items():
        if not isinstance(name, str) or not _FIELD.match(name):
            raise PeerError(400, "12", f"INVALID FIELD NAME {name!r}")
        if not isinstance(value, str):
            raise PeerError(400, "12", f"FIELD {name} MUST BE A STRING")
        record[name] = value
    for name in ENTITIES[entity]:
        if not record.get(name, "").strip():
            raise PeerError(400, "12", f"KEY FIELD {name} MISSING")
    if "LSTUPD" in record:
        try:
            parse_timestamp(record["LSTUPD"])
        except ValueError:
            raise PeerError(400, "12", "LSTUPD MUST BE YYYYMMDDHHMMSS") from None
    return record


def _changed_since(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    try:
        parse_timestamp(raw)
    except ValueError:
        raise PeerError(400, "12", "INVALID CHANGEDSINCE") from None
    return raw


def _key(entity: str, record: dict[str, str]) -> tuple[str, ...]:
    return tuple(record[name] for name in ENTITIES[entity])


def _ordered(table: dict[_Slot, dict[str, str]]) -> list[tuple[_Position, dict[str, str]]]:
    """The records of a file in listing order, each with its position in that order."""
    return sorted(
        (((r["LSTUPD"], key, occurrence), r) for (key, occurrence), r in table.items()),
        key=lambda item: item[0],
    )
