"""Flows 3 and 4: the archive of closed quotes and finished jobs, uploaded as NDJSON
(``POST /api/quotes/archive``) into bronze, and from there (``lake_ingest``) into
``silver/quote_archive``.

An upload is read line by line straight from the request body (one pass, no list of lines, no
decoded copy of the whole body): each non-blank line is parsed with the same strict JSON rules as
a request body (``shared.jsonbody.loads``) and validated on its own against
``shared.models.archive.ArchiveLine``. Valid lines go to bronze in pages of at most 5000 records;
invalid ones are reported by line number with their field errors (the first 1000 such lines),
while the rest of the upload still counts. A record appearing twice in one upload is refused at
its second line, so which copy is stored is never left to chance.

Idempotency: the upload's sha256 names its bronze run, and its first receipt time is pinned in
the ``hubintake`` table (``shared.services.forecasts.IntakeMarkers``), so resending the same
upload produces byte-identical pages, whose create-only writes are no-ops; once an upload is
complete, a resend writes nothing and gets the same answer.
"""

from __future__ import annotations

import codecs
import datetime as dt
import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from shared.jsonbody import BodyError, loads, validate
from shared.lake.bronze import BronzeWriter, format_instant
from shared.lake.specs import QUOTING_TOOL
from shared.models.archive import (
    MAX_REPORTED_LINE_ERRORS,
    ArchiveLine,
    ArchiveLineError,
    ArchiveResult,
)
from shared.models.common import FieldError
from shared.problem import problem
from shared.services.forecasts import IntakeMarkers

log = logging.getLogger(__name__)

ARCHIVE_ENTITY: Final = "archive"
NDJSON_MEDIA_TYPE: Final = "application/x-ndjson"
PAGE_RECORDS: Final = 5000
"""Records per bronze page."""
MAX_FIELD_ERRORS_PER_LINE: Final = 20
"""Field errors listed for one line; a last entry (code ``errors_omitted``) counts the rest."""
_UTF8_CHUNK: Final = 1024 * 1024
_BLANK: Final = b" \t\r"
_NOT_BLANK: Final = re.compile(rb"[^ \t\r\n]")


def _bad_request(detail: str) -> BodyError:
    return BodyError(problem(400, "Bad request", detail, kind="bad-request"))


def check_utf8(raw: bytes) -> None:
    """Raise a 400 ``BodyError`` unless ``raw`` is UTF-8, without decoding it all at once."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(raw)
    for start in range(0, len(raw), _UTF8_CHUNK):
        try:
            decoder.decode(view[start : start + _UTF8_CHUNK])
        except UnicodeDecodeError as exc:
            raise _bad_request(
                f"The upload is not valid UTF-8 (byte offset {start + exc.start})."
            ) from None
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise _bad_request("The upload ends inside a UTF-8 character.") from None


def ndjson_lines(raw: bytes) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line without its LF or CRLF) for every line of ``raw``."""
    start, number, size = 0, 0, len(raw)
    while start < size:
        end = raw.find(b"\n", start)
        if end < 0:
            end = size
        number += 1
        line = raw[start:end]
        yield number, line[:-1] if line.endswith(b"\r") else line
        start = end + 1


@dataclass
class _Tally:
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    errors: list[ArchiveLineError] = field(default_factory=list)

    def reject(self, line: int, errors: list[FieldError]) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_REPORTED_LINE_ERRORS:
            self.errors.append(ArchiveLineError(line=line, errors=errors))


def _line_errors(exc: BodyError) -> list[FieldError]:
    body = exc.problem
    raw: list[dict[str, Any]] = list(body.get("errors") or [])
    if not raw:
        # Not JSON at all (400): one error for the whole line.
        code = str(body.get("type", "")).rsplit("/", 1)[-1].replace("-", "_") or "malformed_json"
        raw = [{"pointer": "", "detail": str(body.get("detail") or body["title"]), "code": code}]
    omitted = len(raw) - MAX_FIELD_ERRORS_PER_LINE + int(body.get("errorsOmitted") or 0)
    errors = [FieldError.model_validate(e) for e in raw[:MAX_FIELD_ERRORS_PER_LINE]]
    if omitted > 0:
        errors.append(
            FieldError(
                pointer="",
                detail=f"{omitted} more field error(s) on this line are not listed",
                code="errors_omitted",
            )
        )
    return errors


@dataclass
class ArchiveImport:
    """Imports archive uploads into bronze (built once by ``shared.wiring``)."""

    bronze: BronzeWriter
    markers: IntakeMarkers
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    page_records: int = PAGE_RECORDS

    def import_ndjson(self, raw: bytes) -> ArchiveResult:
        """Validate an upload line by line, store the valid lines, report the invalid ones.

        Raises a 400 ``BodyError`` when the upload is not UTF-8 or holds no line at all; that
        check runs before anything is stored.
        """
        if _NOT_BLANK.search(raw) is None:
            raise _bad_request("The upload is empty; send one JSON object per line.")
        check_utf8(raw)
        digest = hashlib.sha256(raw).hexdigest()
        upload_id = digest[:32]
        run_id = f"ar-{digest[:40]}"
        claim = self.markers.claim(ARCHIVE_ENTITY, digest, self.clock())
        received_at = format_instant(claim.received_at)
        tally = _Tally()
        seen: set[bytes] = set()
        page: list[dict[str, Any]] = []
        pages = 0
        for number, line in ndjson_lines(raw):
            if not line.strip(_BLANK):
                continue
            tally.received += 1
            try:
                value = loads(line)
                record = validate(ArchiveLine, value)
            except BodyError as exc:
                tally.reject(number, _line_errors(exc))
                continue
            key = f"{record.record_type}|{record.quote_id}|{record.job_id or ''}"
            identity = hashlib.blake2b(key.encode(), digest_size=16).digest()
            if identity in seen:
                tally.reject(
                    number,
                    [
                        FieldError(
                            pointer="",
                            detail="an earlier line of this upload holds the same record "
                            "(recordType, quoteId, jobId)",
                            code="duplicate_record",
                        )
                    ],
                )
                continue
            seen.add(identity)
            tally.accepted += 1
            if claim.done:
                continue  # a replay of a complete upload: answer only, write nothing
            assert isinstance(value, dict)  # ArchiveLine validated an object
            page.append(
                {
                    **value,
                    "hubRecordKey": key,
                    "hubUploadId": upload_id,
                    "hubLine": number,
                    "hubReceivedAt": received_at,
                }
            )
            if len(page) >= self.page_records:
                self.bronze.write_page(QUOTING_TOOL, ARCHIVE_ENTITY, run_id, pages, page)
                pages += 1
                page = []
        if page:
            self.bronze.write_page(QUOTING_TOOL, ARCHIVE_ENTITY, run_id, pages, page)
            pages += 1
        if not claim.done:
            self.markers.complete(ARCHIVE_ENTITY, digest, pages=pages, records=tally.accepted)
        log.info(
            "archive upload %s: %d line(s), %d accepted, %d rejected, %d bronze page(s)%s",
            upload_id,
            tally.received,
            tally.accepted,
            tally.rejected,
            pages,
            " (replay)" if claim.done else "",
        )
        return ArchiveResult(
            received=tally.received,
            accepted=tally.accepted,
            rejected=tally.rejected,
            errors=tally.errors,
            errors_truncated=tally.rejected > len(tally.errors),
        )
