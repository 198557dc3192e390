"""Quote flow (1a and the quote steps of the sequence): intake, push to Dataverse,
qualification flag back to the Quoting Tool, and status.

Idempotent by ``(quoteId, revision)`` end to end: the intake accepts a revision exactly once
(create-only table row), the push upserts by alternate keys and skips revisions already pushed or
superseded, and the qualification callback carries an idempotency key and is recorded per
revision so a resync never sends it twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from shared.adapters.dataverse import (
    DataverseClient,
    DeltaTokenExpired,
    UpsertRow,
    bind,
    odata_literal,
)
from shared.adapters.quote_store import QuoteRecord, QuoteStore, Revision, StaleWrite
from shared.adapters.quoting_tool import QuotingToolClient
from shared.adapters.records import CouplingStore, RejectionStore
from shared.adapters.state import WatermarkConflictError, WatermarkStore
from shared.errors import PermanentError, TransientError
from shared.jsonbody import BodyError, canonical_json, loads, validate
from shared.lake.bronze import BronzeReader, BronzeWriter
from shared.models.common import IDENTIFIER_PATTERN
from shared.models.quote import Quote
from shared.problem import problem
from shared.services.territory import Assignment, TerritoryDirectory

log = logging.getLogger(__name__)
_QUOTE_ID = re.compile(IDENTIFIER_PATTERN)

# Dataverse quote state (statecode) -> name (protocols.md, quote.md)
QUOTE_STATES = {0: "Draft", 1: "Active", 2: "Won", 3: "Closed"}
QUOTE_CHANGE_COLUMNS = (
    "quoteid",
    "contoso_quotingtoolid",
    "revisionnumber",
    "statecode",
    "statuscode",
    "totalamount",
    "modifiedon",
)
DELTA_JOB = "dataverse-changes"
MAX_STORE_RETRIES = 5


def content_hash(quote: Quote) -> str:
    """sha256 of the canonical JSON of the validated quote: replays that differ only in
    whitespace or member order are the same content."""
    return hashlib.sha256(canonical_json(quote.model_dump())).hexdigest()


def bronze_run_id(quote_id: str, revision: int) -> str:
    """Deterministic per (quoteId, revision), so a retried request rewrites nothing."""
    digest = hashlib.sha256(quote_id.encode()).hexdigest()[:24]
    return f"q{digest}-r{revision}"


@dataclass
class Outcome:
    """What the HTTP layer answers: a status, a body and whether to enqueue a push message."""

    status: int
    body: dict[str, Any]
    message: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class QuoteFlow:
    """The quote services and their collaborators (built once by ``shared.wiring``)."""

    store: QuoteStore
    bronze: BronzeWriter
    bronze_reader: BronzeReader
    territories: TerritoryDirectory
    dataverse: DataverseClient
    callbacks: QuotingToolClient
    delta_tokens: WatermarkStore
    couplings: CouplingStore
    rejections: RejectionStore
    qualified_statuses: frozenset[str] = frozenset({"Active"})
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)

    # ---- intake (POST /api/quotes) ------------------------------------------------------------
    def ingest_quote(self, quote: Quote, raw_body: str) -> Outcome:
        """Accept a validated quote revision exactly once.

        Exact replay → the same answer (re-enqueued only while the push hasn't happened, which the
        push absorbs); same key, different content → 409; a revision lower than the accepted one →
        409 with the current revision. New revisions are written to bronze, recorded, then
        enqueued.
        """
        digest = content_hash(quote)
        for _ in range(MAX_STORE_RETRIES):
            current = self.store.get(quote.quote_id)
            decided = self._decide_replay(quote, digest, current)
            if decided is not None:
                return decided
            try:
                return self._accept(quote, raw_body, digest, current)
            except StaleWrite:
                continue  # a concurrent request for the same quote won; decide again
        raise TransientError(f"quote {quote.quote_id}: too much concurrent contention")

    def _decide_replay(
        self, quote: Quote, digest: str, current: QuoteRecord | None
    ) -> Outcome | None:
        if current is None:
            return None
        if quote.revision < current.revision:
            return Outcome(
                409,
                _conflict(
                    "stale-revision",
                    "Stale revision",
                    f"revision {quote.revision} is lower than the accepted revision "
                    f"{current.revision}",
                    current.revision,
                ),
            )
        if quote.revision > current.revision:
            return None
        if digest != current.content_hash:
            return Outcome(
                409,
                _conflict(
                    "revision-conflict",
                    "Revision conflict",
                    f"revision {quote.revision} was already accepted with different content; "
                    "send a new revision",
                    current.revision,
                ),
            )
        message = None
        if current.status == "received":
            # The first answer may have been lost before its message was sent; the push skips
            # revisions it already handled, so re-sending is harmless and closes that gap.
            message = _push_message(current)
        return Outcome(202, _accepted(current), message, _location(quote.quote_id))

    def _accept(
        self, quote: Quote, raw_body: str, digest: str, current: QuoteRecord | None
    ) -> Outcome:
        now = self.clock()
        assignment = self._assign(quote)
        tracking_id = str(uuid.uuid4())
        run_id = bronze_run_id(quote.quote_id, quote.revision)
        page = self.bronze.write_page(
            "quotingtool",
            "quotes",
            run_id,
            0,
            [{"quoteId": quote.quote_id, "revision": quote.revision, "body": raw_body}],
            ingested_at=now,
        )
        if not self.store.add_revision(
            Revision(quote.quote_id, quote.revision, digest, tracking_id, now, page.name)
        ):
            existing = self.store.get_revision(quote.quote_id, quote.revision)
            if existing is None or existing.content_hash != digest:
                raise StaleWrite("revision row appeared with other content")
            tracking_id = existing.tracking_id
        record = QuoteRecord(
            quote_id=quote.quote_id,
            revision=quote.revision,
            content_hash=digest,
            tracking_id=tracking_id,
            status="received",
            lifecycle=list(current.lifecycle) if current else [],
            territory=assignment.as_dict(),
            dataverse_id=current.dataverse_id if current else None,
            callbacks=list(current.callbacks) if current else [],
            pushed_revision=current.pushed_revision if current else None,
            etag=current.etag if current else None,
        )
        record.step("received", now, trackingId=tracking_id)
        record = self.store.save(record)
        log.info("quote %s r%d accepted (%s)", quote.quote_id, quote.revision, assignment.rule)
        return Outcome(202, _accepted(record), _push_message(record), _location(quote.quote_id))

    def _assign(self, quote: Quote) -> Assignment:
        try:
            directory = self.territories.current()
        except (TransientError, PermanentError) as exc:
            # Intake never fails because Dataverse is slow; the push assigns it then.
            log.warning("territory map unavailable at intake: %s", exc)
            return Assignment(rule="pending")
        ship = quote.ship_to
        return directory.assign(ship.postal_code, ship.county, ship.region)

    # ---- push to Dataverse (Service Bus trigger) ----------------------------------------------
    def push_quote(self, body: bytes, *, message_id: str, delivery_count: int) -> str:
        """Upsert an accepted quote revision and its lines into Dataverse.

        Returns what happened (``pushed``, ``skipped:…`` or ``rejected``). Permanent failures
        (unknown account or product, a quote no longer in Draft, a malformed message) are recorded
        as rejected and the message completes. Transient failures are recorded on the quote and
        raised, so Service Bus redelivers up to its max delivery count and then dead-letters.
        """
        try:
            message = _parse_push_message(body)
        except PermanentError as exc:
            self.rejections.record("quote-push", message_id or "unknown", exc.code, str(exc))
            log.warning("quote push message %s rejected: %s", message_id, exc)
            return "rejected"
        quote_id, revision = message["quoteId"], int(message["revision"])
        record = self.store.get(quote_id)
        if record is None:
            self.rejections.record(
                "quote-push", f"{quote_id}|{revision}", "unknown-quote", "no accepted quote"
            )
            return "rejected"
        if record.revision > revision:
            log.info("quote %s r%d superseded by r%d; skipped", quote_id, revision, record.revision)
            return "skipped:superseded"
        if record.pushed_revision is not None and record.pushed_revision >= revision:
            return "skipped:already-pushed"
        if record.status == "rejected" and record.revision == revision:
            return "skipped:rejected"
        try:
            dataverse_id, lines, territory = self._push(record)
        except PermanentError as exc:
            self._reject(quote_id, revision, exc.code, str(exc))
            return "rejected"
        except TransientError as exc:
            self._note_attempt(quote_id, revision, str(exc), delivery_count)
            raise
        self.couplings.link("quote", {"quotingtool": quote_id, "dataverse": dataverse_id})

        def pushed(record: QuoteRecord) -> None:
            record.dataverse_id = dataverse_id
            record.territory = territory
            record.pushed_revision = revision
            record.last_error = None
            record.step("inDataverse", self.clock(), lines=lines)

        self._update(quote_id, revision, pushed)
        return "pushed"

    def _load_quote(self, record: QuoteRecord) -> Quote:
        revision = self.store.get_revision(record.quote_id, record.revision)
        if revision is None:
            raise PermanentError("the accepted revision has no idempotency record", code="corrupt")
        page = self.bronze_reader.read_page(revision.bronze_path)
        raw = str(page.records[0]["body"])
        try:
            return validate(Quote, loads(raw.encode("utf-8")))
        except BodyError as exc:
            raise PermanentError(
                f"bronze quote no longer validates: {exc}", code="invalid"
            ) from None

    def _push(self, record: QuoteRecord) -> tuple[str, int, dict[str, Any]]:
        quote = self._load_quote(record)
        territory = record.territory
        if territory.get("rule") == "pending":
            ship = quote.ship_to
            territory = (
                self.territories.current()
                .assign(ship.postal_code, ship.county, ship.region)
                .as_dict()
            )
        account = self.dataverse.get(
            "accounts", {"accountnumber": quote.account_number}, select=["accountid"]
        )
        if account is None:
            raise PermanentError(
                f"unknown account: no Dataverse account has accountnumber {quote.account_number!r}",
                code="unknown-account",
            )
        products = self._products({line.sku for line in quote.lines})
        missing = sorted({line.sku for line in quote.lines} - set(products))
        if missing:
            raise PermanentError(
                f"unknown product(s): no Dataverse product has productnumber {missing}",
                code="unknown-product",
            )
        key = {"contoso_quotingtoolid": quote.quote_id}
        existing = self.dataverse.get("quotes", key, select=["quoteid", "statecode"])
        if existing is not None and int(existing.get("statecode") or 0) != 0:
            state = QUOTE_STATES.get(int(existing["statecode"]), str(existing["statecode"]))
            raise PermanentError(
                f"the Dataverse quote is no longer in Draft (state {state}); only Draft quotes "
                "can be changed",
                code="not-draft",
            )
        total = sum((_line_net(line) for line in quote.lines), Decimal(0))
        result = self.dataverse.upsert(
            "quotes",
            key,
            {
                "name": f"{quote.quote_id} r{quote.revision}",
                "revisionnumber": quote.revision,
                "customerid_account@odata.bind": bind("accounts", _uuid(account["accountid"])),
                "totalamount": total,
                "contoso_territorycode": territory.get("territoryCode") or "",
                "contoso_territoryrule": territory.get("rule") or "",
                "contoso_salesrep": quote.sales_rep,
                "closeprobability": int((quote.probability * 100).to_integral_value()),
                "effectiveto": quote.expected_close_date.isoformat() + "T00:00:00Z",
                "description": quote.notes or "",
            },
            return_representation=True,
        )
        # An upsert by alternate key may name the row by that key, not its id; ask for the row.
        dataverse_id = result.entity_id or (str(result.row["quoteid"]) if result.row else None)
        if dataverse_id is None:
            raise PermanentError("Dataverse returned no id for the quote", code="no-id")
        rows = [
            UpsertRow(
                key={"contoso_quotelinekey": f"{quote.quote_id}|{line.line_number}"},
                values={
                    "quoteid@odata.bind": bind("quotes", _uuid(dataverse_id)),
                    "productid@odata.bind": bind("products", _uuid(products[line.sku])),
                    "lineitemnumber": line.line_number,
                    "quantity": line.quantity,
                    "priceperunit": line.unit_price,
                    "contoso_discountpct": line.discount_pct,
                    "manualdiscountamount": _line_discount(line),
                    "description": line.description or "",
                    "contoso_configuration": (
                        line.configuration.model_dump_json(by_alias=True)
                        if line.configuration is not None
                        else ""
                    ),
                },
            )
            for line in quote.lines
        ]
        bulk = self.dataverse.upsert_many("quotedetails", "quotedetail", rows)
        if bulk.transient:
            raise TransientError(f"{len(bulk.transient)} quote line(s) failed transiently")
        if bulk.rejected:
            reasons = "; ".join(f"line {r.key}: {r.error}" for r in bulk.rejected[:5])
            raise PermanentError(f"Dataverse refused quote lines: {reasons}", code="line-refused")
        self._drop_removed_lines(dataverse_id, {str(r.key["contoso_quotelinekey"]) for r in rows})  # type: ignore[index]
        return dataverse_id, len(rows), territory

    def _products(self, skus: set[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        ordered = sorted(skus)
        for start in range(0, len(ordered), 25):
            chunk = ordered[start : start + 25]
            condition = " or ".join(f"productnumber eq {odata_literal(s)}" for s in chunk)
            for row in self.dataverse.query(
                "products", select=["productid", "productnumber"], filter=condition
            ):
                found[str(row["productnumber"])] = str(row["productid"])
        return found

    def _drop_removed_lines(self, dataverse_id: str, keep: set[str]) -> None:
        """A new revision may drop lines; remove the ones it no longer has."""
        existing = self.dataverse.query(
            "quotedetails",
            select=["quotedetailid", "contoso_quotelinekey"],
            filter=f"_quoteid_value eq {dataverse_id}",
        )
        for row in list(existing):
            if str(row.get("contoso_quotelinekey")) not in keep:
                self.dataverse.delete("quotedetails", _uuid(row["quotedetailid"]))

    def _update(self, quote_id: str, revision: int, change: Callable[[QuoteRecord], Any]) -> None:
        """Apply ``change`` to the current record of this revision under its ETag."""
        for _ in range(MAX_STORE_RETRIES):
            record = self.store.get(quote_id)
            if record is None or record.revision != revision:
                return  # superseded meanwhile: the newer revision owns the record
            change(record)
            try:
                self.store.save(record)
                return
            except StaleWrite:
                continue
        raise TransientError(f"quote {quote_id}: could not update its record")

    def _reject(self, quote_id: str, revision: int, code: str, reason: str) -> None:
        self.rejections.record("quote-push", f"{quote_id}|{revision}", code, reason)

        def rejected(record: QuoteRecord) -> None:
            record.reject_reason = f"{code}: {reason}"
            record.step("rejected", self.clock(), code=code, reason=reason)

        self._update(quote_id, revision, rejected)
        log.warning("quote %s r%d rejected: %s", quote_id, revision, reason)

    def _note_attempt(self, quote_id: str, revision: int, error: str, delivery: int) -> None:
        def note(record: QuoteRecord) -> None:
            record.attempts = delivery
            record.last_error = error[:1000]

        try:
            self._update(quote_id, revision, note)
        except Exception:  # the transient failure being raised matters more
            log.warning("could not record the failed attempt of quote %s", quote_id)

    # ---- qualification (timer on Dataverse change tracking) ----------------------------------
    def track_qualification(self) -> dict[str, int]:
        """Read quote changes from Dataverse change tracking; for each quote that reached a
        qualified status, send the Quoting Tool a signed callback exactly once per revision.

        The delta token is saved only after the whole batch is handled; an expired token means
        a full resync, whose already-sent callbacks are skipped by their recorded keys.
        """
        token = self.delta_tokens.read(DELTA_JOB, "quotes")
        counts = {"changes": 0, "qualified": 0, "callbacks": 0, "resync": 0}
        try:
            delta_link = self._consume_changes(token.value, counts)
        except DeltaTokenExpired:
            log.warning("quote delta token expired; resynchronising all quotes")
            counts["resync"] = 1
            delta_link = self._consume_changes(None, counts)
        if delta_link and delta_link != token.value:
            try:
                self.delta_tokens.advance(DELTA_JOB, "quotes", delta_link, token.etag)
            except WatermarkConflictError:
                # An overlapping run saved its token; ours covers the same changes, which were
                # handled idempotently, so nothing is lost by keeping theirs.
                log.info("quote delta token advanced by an overlapping run")
        return counts

    def _consume_changes(self, delta_link: str | None, counts: dict[str, int]) -> str | None:
        last: str | None = None
        for page in self.dataverse.iter_changes(
            "quotes", QUOTE_CHANGE_COLUMNS, delta_link=delta_link
        ):
            for row in page.upserted:
                counts["changes"] += 1
                quote_id = row.get("contoso_quotingtoolid")
                state = QUOTE_STATES.get(int(row.get("statecode") or 0), "")
                if quote_id and state in self.qualified_statuses:
                    counts["qualified"] += 1
                    counts["callbacks"] += self._qualify(str(quote_id), row, state)
            last = page.delta_link or last
        return last

    def _qualify(self, quote_id: str, row: Mapping[str, Any], state: str) -> int:
        record = self.store.get(quote_id)
        if record is None:
            log.info("qualified quote %s was not created through the hub; no callback", quote_id)
            return 0
        revision = int(row.get("revisionnumber") or record.revision)
        key = f"{quote_id}:{revision}:qualified"
        if key in record.callbacks:
            return 0
        dataverse_id = str(row["quoteid"])
        approved = self._approved_lines(dataverse_id)
        event = {
            "event": "quote.qualified",
            "quoteId": quote_id,
            "revision": revision,
            "status": "qualified",
            "dataverseState": state,
            "dataverseId": dataverse_id,
            "trackingId": record.tracking_id,
            "approvedLines": approved,
            # When Dataverse recorded the qualifying change, not when the hub noticed it: a resend
            # after a failed delivery must carry the same content under the same idempotency key
            # (the tool refuses a key reused with another body, 409), so no hub clock goes in.
            "qualifiedAt": str(row.get("modifiedon") or self.clock().isoformat()),
        }
        self.callbacks.send(event, key)

        def mark(r: QuoteRecord) -> None:
            r.callbacks.append(key)
            r.approved = {"lines": approved}
            r.step("qualified", self.clock())

        self._update(quote_id, record.revision, mark)
        return 1

    def _approved_lines(self, dataverse_id: str) -> list[dict[str, Any]]:
        rows = self.dataverse.query(
            "quotedetails",
            select=["lineitemnumber", "priceperunit", "contoso_discountpct"],
            filter=f"_quoteid_value eq {dataverse_id}",
        )
        return sorted(
            (
                {
                    "lineNumber": int(r["lineitemnumber"]),
                    "approvedUnitPrice": _money(r.get("priceperunit")),
                    "approvedDiscountPct": str(Decimal(str(r.get("contoso_discountpct") or 0))),
                }
                for r in rows
            ),
            key=lambda x: int(x["lineNumber"]),
        )

    # ---- status (GET /api/quotes/{quoteId}) ---------------------------------------------------
    def quote_status(self, quote_id: str) -> dict[str, Any] | None:
        """The quote's lifecycle as the API shows it, or None if the hub never received it."""
        record = self.store.get(quote_id)
        if record is None:
            return None
        body: dict[str, Any] = {
            "quoteId": record.quote_id,
            "currentRevision": record.revision,
            "status": record.status,
            "trackingId": record.tracking_id,
            "steps": record.lifecycle,
            "territory": record.territory,
            "dataverseId": record.dataverse_id,
            "approvedLines": record.approved.get("lines", []),
            "sapOrderNumber": record.sap_order_number,
        }
        rejected = next((s for s in reversed(record.lifecycle) if s["step"] == "rejected"), None)
        if record.status == "rejected" and rejected is not None:
            body["rejection"] = {
                "code": rejected.get("code", "rejected"),
                "reason": rejected.get("reason", record.reject_reason or ""),
                "at": rejected["at"],
            }
        if record.last_error and record.status == "received":
            body["lastError"] = {"attempts": record.attempts, "error": record.last_error}
        return body


def _parse_push_message(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        # RecursionError: the C decoder gives up on deep nesting; retrying would fail the same way.
        raise PermanentError("message body is not JSON", code="malformed") from None
    revision = message.get("revision") if isinstance(message, dict) else None
    if (
        not isinstance(message, dict)
        or not isinstance(message.get("quoteId"), str)
        or not isinstance(revision, int)
        or isinstance(revision, bool)
        or revision < 0
    ):
        raise PermanentError("message lacks quoteId/revision", code="malformed")
    # The id becomes a Table key and a Dataverse key: one that intake would have refused (too
    # long, or carrying / \ # ?) must be rejected here, not fail the store call on every delivery.
    if _QUOTE_ID.fullmatch(message["quoteId"]) is None or len(message["quoteId"]) > 40:
        raise PermanentError("message quoteId is not a valid quote id", code="malformed")
    return message


def _push_message(record: QuoteRecord) -> dict[str, Any]:
    return {
        "quoteId": record.quote_id,
        "revision": record.revision,
        "trackingId": record.tracking_id,
        "contentHash": record.content_hash,
    }


def _accepted(record: QuoteRecord) -> dict[str, Any]:
    return {
        "quoteId": record.quote_id,
        "revision": record.revision,
        "status": record.status,
        "trackingId": record.tracking_id,
    }


def _location(quote_id: str) -> dict[str, str]:
    return {"Location": f"/api/quotes/{urllib.parse.quote(quote_id, safe='')}"}


def _conflict(kind: str, title: str, detail: str, current: int) -> dict[str, Any]:
    return problem(409, title, detail, kind=kind, currentRevision=current)


def _line_gross(line: Any) -> Decimal:
    return Decimal(line.quantity) * Decimal(line.unit_price)


def _line_discount(line: Any) -> Decimal:
    return (_line_gross(line) * Decimal(line.discount_pct) / 100).quantize(Decimal("0.01"))


def _line_net(line: Any) -> Decimal:
    return (_line_gross(line) - _line_discount(line)).quantize(Decimal("0.01"))


def _money(value: Any) -> str:
    return str(Decimal(str(value or 0)).quantize(Decimal("0.01")))


def _uuid(value: Any) -> uuid.UUID:
    return uuid.UUID(str(value))
