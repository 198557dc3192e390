"""Generated legacy records, rendered once to page files and listed like the LOS gateway.

Every benchmark that compares the hub with something else reads the same records from here, so
both sides see the same data in the same pages:

- ``render(folder, total, page_size)`` writes the mainframe's four files as pages of the wire
  format (``{"RECORDS": [...]}``, one page per line) for two generations: the initial load, and a
  later one in which every tenth record changed;
- ``PageFileSource`` serves them through the hub's ``MainframeChangeSource`` port. A listing
  parses each page's JSON as it is read, like the real client parsing a response, and holds one
  page at a time, so neither the source nor the files count against the hub's memory;
- ``records(folder, ...)`` yields the same pages for a consumer that is not the hub (dlt).

Records are a pure function of (seed, entity, page), so any scale renders without holding the
table in memory: padded ids, implied decimals, ``YYYYMMDD`` dates, about 0.5% invalid (an unknown
status code), keys unique per file.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TS = "%Y%m%d%H%M%S"
SEED = 20260504
SHARE = {"customers": 0.05, "orders": 0.35, "orderlines": 0.55, "inventory": 0.05}
KEYS: dict[str, tuple[str, ...]] = {
    "customers": ("CUSTNO",),
    "orders": ("ORDNO",),
    "orderlines": ("ORDNO", "LINENO"),
    "inventory": ("PLANT", "ITEMNO"),
}
INITIAL = dt.datetime(2026, 5, 4, 8, 0, tzinfo=dt.UTC)
"""LSTUPD of the initial generation."""
CHANGED = INITIAL + dt.timedelta(hours=2)
"""LSTUPD of the changed records."""
CHANGED_EVERY = 10
"""One record in this many changes in the second generation (10%)."""
_STATUSES = "ORSICX"
MANIFEST = "manifest.json"


def counts(total: int) -> dict[str, int]:
    """How many records each file gets out of ``total`` (order lines take the rounding)."""
    shares = {e: int(total * share) for e, share in SHARE.items()}
    shares["orderlines"] += total - sum(shares.values())
    return shares


def _page(
    entity: str, start: int, stop: int, sizes: dict[str, int], stamp: str
) -> list[dict[str, str]]:
    rng = random.Random(f"{SEED}:{entity}:{start}")
    customers = max(1, sizes["customers"])
    rows: list[dict[str, str]]
    if entity == "customers":
        rows = [
            {
                "CUSTNO": f"C{i:07d}".ljust(10),
                "CUSTNM": f"Customer {i}".ljust(40),
                "CITY": "Springfield".ljust(20),
                "STATE": "IL",
                "ZIP": f"{62700 + i % 90:05d}",
                "CNTRY": "US",
                "STATUS": rng.choice("AAAAIH"),
                "LSTUPD": stamp,
            }
            for i in range(start, stop)
        ]
    elif entity == "orders":
        rows = [
            {
                "ORDNO": f"{i:010d}",
                "CUSTNO": f"C{rng.randrange(customers):07d}".ljust(10),
                "ORDDT": f"2026{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
                "REQDT": f"2026{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
                "STATUS": rng.choice(_STATUSES),
                "CURR": "USD",
                "TOTAMT": f"{rng.randrange(10_000, 100_000_000):012d}",
                "PLANT": f"P{rng.randint(1, 5)}00",
                "SLSREP": f"REP{rng.randint(1, 80):03d}".ljust(8),
                "QTREF": "".ljust(40),
                "LSTUPD": stamp,
            }
            for i in range(start, stop)
        ]
    elif entity == "orderlines":
        rows = [
            {
                "ORDNO": f"{i // 2:010d}",
                "LINENO": f"{(i % 2 + 1) * 10:04d}",
                "ITEMNO": f"SKU-{rng.randrange(5000):05d}".ljust(18),
                "QTY": f"{rng.randrange(1, 10_000_000):08d}",
                "UPRICE": f"{rng.randrange(100, 1_000_000):010d}",
                "STATUS": rng.choice(_STATUSES),
                "LSTUPD": stamp,
            }
            for i in range(start, stop)
        ]
    elif entity == "inventory":
        # Key (PLANT, ITEMNO) is unique because ITEMNO is; the listing orders by PLANT first.
        rows = [
            {
                "PLANT": f"P{i % 5 + 1}00",
                "ITEMNO": f"SKU-{i:07d}".ljust(18),
                "ONHAND": f"{rng.randrange(10_000):07d}",
                "ALLOC": f"{rng.randrange(1_000):07d}",
                "LSTUPD": stamp,
            }
            for i in range(start, stop)
        ]
    else:
        raise ValueError(f"unknown entity {entity!r}")
    for offset, row in enumerate(rows):
        if (start + offset) % 200 == 13:
            row["STATUS"] = "?"
    return rows


def _changed(row: dict[str, str], stamp: str) -> dict[str, str]:
    """The record as the later generation has it: a field changed and a new LSTUPD."""
    changed = dict(row, LSTUPD=stamp)
    if "CUSTNM" in changed:
        changed["CITY"] = "Shelbyville".ljust(20)
    elif changed.get("STATUS") in ("O", "R", "S", "I", "X"):
        changed["STATUS"] = "C"
    for name in ("TOTAMT", "QTY", "ONHAND"):
        if name in changed:
            changed[name] = str(int(changed[name]) + 1).zfill(len(changed[name]))
    return changed


def _key_order(entity: str, rows: list[dict[str, str]]) -> list[dict[str, str]]:
    keys = KEYS[entity]
    return sorted(rows, key=lambda r: tuple(r[k] for k in keys))


@dataclass(frozen=True)
class Rendered:
    """Where a rendered source lives and what it holds."""

    folder: Path
    total: int
    page_size: int
    changed: int

    def path(self, generation: int, entity: str) -> Path:
        """The page file of one generation of one entity."""
        return self.folder / f"g{generation}-{entity}.jsonl"

    @classmethod
    def load(cls, folder: Path) -> Rendered:
        """A source rendered earlier (by another process) into ``folder``."""
        manifest = json.loads((folder / MANIFEST).read_text())
        return cls(
            folder, int(manifest["total"]), int(manifest["page_size"]), int(manifest["changed"])
        )


def render(folder: Path, total: int, page_size: int = 1000) -> Rendered:
    """Write both generations of ``total`` records as page files in ``folder``.

    The listing order is the gateway's: ``LSTUPD``, then the key. Within a generation every
    record has the same ``LSTUPD``, so pages are in key order. Records are generated in key order
    except inventory (listed by PLANT first), which is sorted as a whole: it is 5% of the records.
    """
    folder.mkdir(parents=True, exist_ok=True)
    sizes = counts(total)
    initial, later = INITIAL.strftime(TS), CHANGED.strftime(TS)
    rendered = 0
    for entity, size in sizes.items():
        pages: Iterator[list[dict[str, str]]]
        changes: list[dict[str, str]] = []
        if entity == "inventory":
            rows = [
                row
                for start in range(0, size, page_size)
                for row in _page(entity, start, min(size, start + page_size), sizes, initial)
            ]
            changes = _key_order(
                entity,
                [_changed(r, later) for i, r in enumerate(rows) if i % CHANGED_EVERY == 7],
            )
            ordered = _key_order(entity, rows)
            pages = (ordered[s : s + page_size] for s in range(0, len(ordered), page_size))
        else:
            pages = (
                _page(entity, start, min(size, start + page_size), sizes, initial)
                for start in range(0, size, page_size)
            )
        with (
            (folder / f"g0-{entity}.jsonl").open("w") as g0,
            (folder / f"g1-{entity}.jsonl").open("w") as g1,
        ):
            index = 0
            for page in pages:
                g0.write(_line(page))
                if entity != "inventory":
                    changes.extend(
                        _changed(r, later)
                        for i, r in enumerate(page, start=index)
                        if i % CHANGED_EVERY == 7
                    )
                index += len(page)
                while len(changes) >= page_size:
                    g1.write(_line(changes[:page_size]))
                    rendered += page_size
                    del changes[:page_size]
            for start in range(0, len(changes), page_size):
                g1.write(_line(changes[start : start + page_size]))
                rendered += len(changes[start : start + page_size])
    manifest = {"total": total, "page_size": page_size, "changed": rendered}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return Rendered(folder, total, page_size, rendered)


def _line(page: list[dict[str, str]]) -> str:
    return json.dumps({"RECORDS": page}, separators=(",", ":")) + "\n"


@dataclass(frozen=True)
class Page:
    """One page of a listing (the ``shared.ports.ChangePage`` shape)."""

    records: list[dict[str, Any]]
    asof: dt.datetime


class PageFileSource:
    """The hub's ``MainframeChangeSource`` over rendered page files.

    ``generations`` says how many generations exist yet (1: only the initial load; 2: the
    changes happened too). A listing returns the newest generation whose ``LSTUPD`` is after
    ``since``; a listing that would span both generations is refused, because it would return two
    versions of the changed records, which the gateway never does (no benchmark asks for one).
    """

    def __init__(self, rendered: Rendered, *, generations: int = 1, now: dt.datetime) -> None:
        self.rendered = rendered
        self.generations = generations
        self.now = now
        self.requests = 0

    def list_changes(
        self, entity: str, since: dt.datetime | None, page_size: int = 1000
    ) -> Iterator[Page]:
        """Pages of ``entity`` changed after ``since`` (the gateway's strict greater-than)."""
        if page_size != self.rendered.page_size:
            raise ValueError(f"rendered with pages of {self.rendered.page_size}, not {page_size}")
        stamps = (INITIAL, CHANGED)[: self.generations]
        due = [g for g, stamp in enumerate(stamps) if since is None or stamp > since]
        if len(due) > 1:
            raise ValueError("a listing across both generations would repeat changed records")
        self.requests += 1
        if not due:
            yield Page([], self.now)
            return
        with self.rendered.path(due[0], entity).open() as pages:
            for line in pages:
                records = json.loads(line)["RECORDS"]
                yield Page(records, self.now)


def records(rendered: Rendered, generation: int, entity: str) -> Iterator[list[dict[str, Any]]]:
    """The pages of one generation of one entity, parsed, for consumers other than the hub."""
    with rendered.path(generation, entity).open() as pages:
        for line in pages:
            yield json.loads(line)["RECORDS"]
