"""Bronze: raw records exactly as received, gzip JSON lines, create-only.

Light on purpose: this module needs only ``azure-storage-blob``, because the HTTP intake paths
write their raw requests here. Nothing in it imports deltalake, pyarrow or polars.

A page becomes one blob named ``{source}/{entity}/ingest_date=YYYY-MM-DD/{runId}-{n}.jsonl.gz``.
Each line is the canonical JSON (sorted keys, no spaces, UTF-8) of the envelope
``{contentHash, entity, ingestedAt, record, runId, source}``. The record's values are kept exactly
as received; its members are written in sorted order, which JSON does not give meaning to
(RFC 8259 §4), so that ``contentHash`` = sha256 of the record's own serialisation in the line and
any reader can verify it.

Blobs are created with ``If-None-Match: *`` (``overwrite=False``) and never rewritten. Finding a
blob already there is fine when it holds the same records (an idempotent replay, recognised by the
page hash in the blob's metadata) and an error otherwise.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from shared.lake.errors import BronzeConflictError
from shared.lake.storage import LakeStorage

log = logging.getLogger(__name__)

_SEGMENT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$")
_NAME = re.compile(
    r"^(?P<source>[^/]+)/(?P<entity>[^/]+)/ingest_date=(?P<date>\d{4}-\d{2}-\d{2})/"
    r"(?P<run>[A-Za-z0-9_-]+)-(?P<n>\d+)\.jsonl\.gz$"
)
# Fast and still compact for JSON text; bronze is written far more often than it is read.
_GZIP_LEVEL = 3


def _refuse(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _make_canonical() -> Callable[[Any], str]:
    """The canonical encoder, built once.

    ``JSONEncoder.encode`` builds a new C encoder on every call, which costs a third of the
    time for small records; the C encoder built once gives the same text.
    """
    slow = json.JSONEncoder(
        sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode
    if c_make_encoder is None:  # pragma: no cover - CPython always has the C accelerator
        return slow
    # markers=None: no shared circular-reference state between threads; JSON parsed from a
    # peer cannot be circular, and a circular object still fails (RecursionError).
    fast = c_make_encoder(None, _refuse, encode_basestring, None, ":", ",", True, False, False)

    def encode(value: Any) -> str:
        if isinstance(value, dict):
            return "".join(fast(value, 0))
        return slow(value)

    return encode


_canonical = _make_canonical()


def canonical_json(record: Mapping[str, Any]) -> str:
    """Sorted keys, no insignificant whitespace, UTF-8 text, NaN refused."""
    return _canonical(record)


def content_hash(record: Mapping[str, Any]) -> str:
    """sha256 (hex) of the record's canonical JSON: the record's identity across re-reads."""
    return hashlib.sha256(canonical_json(record).encode()).hexdigest()


def page_hash(content_hashes: Sequence[str]) -> str:
    """The identity of a page: sha256 over its records' hashes in order."""
    return hashlib.sha256("\n".join(content_hashes).encode()).hexdigest()


def format_instant(value: dt.datetime) -> str:
    """ISO 8601 UTC with microseconds and ``Z``."""
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def blob_name(source: str, entity: str, ingest_date: dt.date, run_id: str, n: int) -> str:
    """The bronze blob name of page ``n`` of a run, validating every part."""
    if not _SEGMENT.match(source) or not _SEGMENT.match(entity):
        raise ValueError("source and entity must be lower-case names ([a-z0-9_-])")
    if not _RUN_ID.match(run_id):
        raise ValueError("run id must be letters, digits, '_' or '-'")
    if n < 0:
        raise ValueError("page number must not be negative")
    return f"{source}/{entity}/ingest_date={ingest_date.isoformat()}/{run_id}-{n}.jsonl.gz"


@dataclass(frozen=True)
class BronzePage:
    """One bronze blob: where it is, what it holds, and whether this call created it."""

    container: str
    name: str
    count: int
    content_hashes: tuple[str, ...]
    ingested_at: dt.datetime
    run_id: str
    created: bool
    record_texts: tuple[str, ...] = field(default=(), repr=False, compare=False)
    """Each record's canonical JSON as written (what silver's quarantine keeps)."""

    @property
    def path(self) -> str:
        """``<container>/<blob name>``: the lineage pointer silver and quarantine rows carry."""
        return f"{self.container}/{self.name}"


@dataclass(frozen=True)
class BronzePageData:
    """A bronze page read back: lineage plus the raw records in their original order."""

    container: str
    name: str
    source: str
    entity: str
    run_id: str
    ingested_at: dt.datetime
    records: list[dict[str, Any]]
    content_hashes: list[str]
    record_texts: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @property
    def path(self) -> str:
        """``<container>/<blob name>``."""
        return f"{self.container}/{self.name}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class BronzeWriter:
    """Writes pages of raw records to the bronze container, create-only."""

    def __init__(self, storage: LakeStorage, *, clock: Callable[[], dt.datetime] = _now) -> None:
        self.storage = storage
        self.clock = clock

    def write_page(
        self,
        source: str,
        entity: str,
        run_id: str,
        n: int,
        records: Sequence[Mapping[str, Any]],
        *,
        ingested_at: dt.datetime | None = None,
    ) -> BronzePage:
        """Write page ``n`` of run ``run_id`` (at least one record) as one gzip JSON-lines blob.

        Returns the page with its records' content hashes. Raises ``BronzeConflictError`` when
        the name is taken by different content; a replay of the same records returns the
        existing page (``created`` False) with the ingestion time recorded in it.
        """
        if not records:
            raise ValueError("a bronze page holds at least one record")
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import ContentSettings

        when = (ingested_at or self.clock()).astimezone(dt.UTC)
        name = blob_name(source, entity, when.date(), run_id, n)
        container = self.storage.ensure_container("bronze")
        body, hashes, texts = _encode_page(source, entity, run_id, when, records)
        digest = page_hash(hashes)
        metadata = {
            "source": source,
            "entity": entity,
            "runid": run_id,
            "ingestedat": format_instant(when),
            "records": str(len(hashes)),
            "pagehash": digest,
        }
        blob = self.storage.blob_service.get_blob_client(container, name)
        try:
            blob.upload_blob(
                body,
                overwrite=False,
                metadata=metadata,
                content_settings=ContentSettings(content_type="application/gzip"),
            )
        except ResourceExistsError:
            existing = blob.get_blob_properties().metadata or {}
            if existing.get("pagehash") != digest:
                raise BronzeConflictError(
                    f"bronze blob {container}/{name} exists with different content"
                ) from None
            log.info("bronze: %s/%s already written with the same records", container, name)
            recorded = existing.get("ingestedat")
            when = _parse_instant(recorded) if recorded else when
            return BronzePage(
                container, name, len(hashes), tuple(hashes), when, run_id, False, tuple(texts)
            )
        log.debug("bronze: wrote %s/%s (%d records)", container, name, len(hashes))
        return BronzePage(
            container, name, len(hashes), tuple(hashes), when, run_id, True, tuple(texts)
        )


def _encode_page(
    source: str,
    entity: str,
    run_id: str,
    when: dt.datetime,
    records: Sequence[Mapping[str, Any]],
) -> tuple[bytes, list[str], list[str]]:
    """Gzip the page's envelope lines: (gzip body, content hashes, record texts).

    One canonical serialisation per record, no more.

    The envelope is assembled from constant fragments around each record's canonical JSON, which
    yields byte for byte what ``canonical_json(envelope)`` would, at half the cost.
    """
    head = '{"contentHash":"'
    middle = (
        f'","entity":{_canonical(entity)},"ingestedAt":{_canonical(format_instant(when))},"record":'
    )
    tail = f',"runId":{_canonical(run_id)},"source":{_canonical(source)}}}'
    sha256 = hashlib.sha256
    texts = [_canonical(record) for record in records]
    hashes = [sha256(text.encode()).hexdigest() for text in texts]
    lines = [
        f"{head}{digest}{middle}{text}{tail}" for digest, text in zip(hashes, texts, strict=True)
    ]
    lines.append("")
    data = "\n".join(lines).encode()
    # mtime=0: the same page always gzips to the same bytes.
    return gzip.compress(data, compresslevel=_GZIP_LEVEL, mtime=0), hashes, texts


def _parse_instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)


def parse_blob_name(name: str) -> dict[str, str]:
    """The parts of a bronze blob name (source, entity, date, run, n); ValueError if foreign."""
    match = _NAME.match(name)
    if not match:
        raise ValueError(f"not a bronze page name: {name!r}")
    return match.groupdict()


class BronzeReader:
    """Lists and reads bronze pages back, for re-processing into silver."""

    def __init__(self, storage: LakeStorage) -> None:
        self.storage = storage

    def list_pages(
        self,
        source: str,
        entity: str,
        *,
        ingest_date: dt.date | None = None,
        run_id: str | None = None,
    ) -> list[str]:
        """Blob names of a source entity's pages, in (date, run, page number) order."""
        prefix = f"{source}/{entity}/"
        if ingest_date is not None:
            prefix += f"ingest_date={ingest_date.isoformat()}/"
            if run_id is not None:
                prefix += f"{run_id}-"
        container = self.storage.container("bronze")
        client = self.storage.blob_service.get_container_client(container)
        found: list[tuple[str, str, int, str]] = []
        for item in client.list_blobs(name_starts_with=prefix):
            try:
                parts = parse_blob_name(item.name)
            except ValueError:
                continue
            if run_id is not None and parts["run"] != run_id:
                continue
            found.append((parts["date"], parts["run"], int(parts["n"]), item.name))
        return [name for *_, name in sorted(found)]

    def read_page(self, name: str, *, verify: bool = True) -> BronzePageData:
        """Read one page. With ``verify``, every record's content hash is recomputed."""
        container = self.storage.container("bronze")
        raw = self.storage.blob_service.get_blob_client(container, name).download_blob().readall()
        records: list[dict[str, Any]] = []
        hashes: list[str] = []
        texts: list[str] = []
        first: dict[str, Any] | None = None
        # Split on LF only: JSON escapes it inside strings, but not U+0085, U+2028 or U+001C-1E,
        # which str.splitlines() would also split on, cutting a record in two.
        for line in gzip.decompress(raw).decode().split("\n"):
            if not line:
                continue
            envelope = json.loads(line)
            record = envelope["record"]
            text = canonical_json(record)
            if verify and hashlib.sha256(text.encode()).hexdigest() != envelope["contentHash"]:
                raise BronzeConflictError(f"bronze blob {container}/{name}: content hash mismatch")
            first = first or envelope
            records.append(record)
            hashes.append(envelope["contentHash"])
            texts.append(text)
        if first is None:
            raise BronzeConflictError(f"bronze blob {container}/{name} is empty")
        return BronzePageData(
            container=container,
            name=name,
            source=first["source"],
            entity=first["entity"],
            run_id=first["runId"],
            ingested_at=_parse_instant(first["ingestedAt"]),
            records=records,
            content_hashes=hashes,
            record_texts=tuple(texts),
        )

    def iter_pages(
        self, source: str, entity: str, *, ingest_date: dt.date | None = None
    ) -> Iterator[BronzePageData]:
        """Every page of a source entity in order, one at a time (bounded memory)."""
        for name in self.list_pages(source, entity, ingest_date=ingest_date):
            yield self.read_page(name)
