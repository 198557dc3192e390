"""Lake throughput: generated legacy records through bronze -> silver -> gold on Azurite.

Target (issue): 100k legacy records at >= 12,000 records/s on 2 cores. The mainframe is replaced
by an in-memory source of the same port, so the figure is the lake's own cost (gzip, bronze
uploads, polars conformance, Delta MERGE, gold rebuild), as in the raw floor measurement.

    python -m bench.lake_bench [--records 100000] [--page-size 1000] [--json out/lake_bench.json]

Three timed passes on one fresh lake:

- ``initial``: every record is new (bronze + silver inserts) and gold is rebuilt;
- ``changes``: 10% of the records changed (MERGE updates into the full tables) + gold;
- ``idle``: nothing changed (one listing per entity, no writes).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox import azurite
from shared.adapters.state import WatermarkStore
from shared.lake.gold import rebuild_gold
from shared.lake.storage import LakeConfig, LakeStorage
from shared.services.poll_mainframe import poll_mainframe

TS = "%Y%m%d%H%M%S"
SHARE = {"customers": 0.05, "orders": 0.35, "orderlines": 0.55, "inventory": 0.05}
KEYS = {
    "customers": ("CUSTNO",),
    "orders": ("ORDNO",),
    "orderlines": ("ORDNO", "LINENO"),
    "inventory": ("PLANT", "ITEMNO"),
}


@dataclass(frozen=True)
class Page:
    records: list[dict[str, Any]]
    asof: dt.datetime


class MemoryMainframe:
    """The listing contract of docs/mainframe-api.md over in-memory records."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now
        self.tables: dict[str, list[dict[str, str]]] = {e: [] for e in SHARE}

    def prepare(self) -> None:
        """Sort once, outside the timed passes: the real gateway's index is not the hub's cost."""
        for entity, rows in self.tables.items():
            keys = KEYS[entity]
            rows.sort(key=lambda r: (r["LSTUPD"], *(r[k] for k in keys)))

    def list_changes(
        self, entity: str, since: dt.datetime | None, page_size: int = 500
    ) -> Iterator[Page]:
        floor = since.strftime(TS) if since else ""
        rows = [r for r in self.tables[entity] if r["LSTUPD"] > floor]
        if not rows:
            yield Page([], self.now)
            return
        for start in range(0, len(rows), page_size):
            yield Page(rows[start : start + page_size], self.now)


def generate(total: int, stamp: str, rng: random.Random) -> dict[str, list[dict[str, str]]]:
    """Legacy-format records (padded ids, implied decimals), about 0.5% of them invalid."""
    counts = {e: int(total * share) for e, share in SHARE.items()}
    counts["orderlines"] += total - sum(counts.values())
    statuses = "ORSICX"
    customers = [
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
        for i in range(counts["customers"])
    ]
    orders = [
        {
            "ORDNO": f"{i:010d}",
            "CUSTNO": f"C{rng.randrange(max(1, counts['customers'])):07d}".ljust(10),
            "ORDDT": f"2026{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
            "REQDT": f"2026{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
            "STATUS": rng.choice(statuses),
            "CURR": "USD",
            "TOTAMT": f"{rng.randrange(10_000, 100_000_000):012d}",
            "PLANT": f"P{rng.randint(1, 5)}00",
            "SLSREP": f"REP{rng.randint(1, 80):03d}".ljust(8),
            "QTREF": "".ljust(40),
            "LSTUPD": stamp,
        }
        for i in range(counts["orders"])
    ]
    lines = [
        {
            "ORDNO": f"{i // 2:010d}",
            "LINENO": f"{(i % 2 + 1) * 10:04d}",
            "ITEMNO": f"SKU-{rng.randrange(5000):05d}".ljust(18),
            "QTY": f"{rng.randrange(1, 10_000_000):08d}",
            "UPRICE": f"{rng.randrange(100, 1_000_000):010d}",
            "STATUS": rng.choice(statuses),
            "LSTUPD": stamp,
        }
        for i in range(counts["orderlines"])
    ]
    inventory = [
        {
            "PLANT": f"P{i % 5 + 1}00",
            "ITEMNO": f"SKU-{i:05d}".ljust(18),
            "ONHAND": f"{rng.randrange(10_000):07d}",
            "ALLOC": f"{rng.randrange(1_000):07d}",
            "LSTUPD": stamp,
        }
        for i in range(counts["inventory"])
    ]
    data = {"customers": customers, "orders": orders, "orderlines": lines, "inventory": inventory}
    for rows in data.values():
        for row in rng.sample(rows, max(1, len(rows) // 200)):
            row["STATUS"] = "?"
    return data


def run(total: int, page_size: int) -> dict[str, Any]:
    rng = random.Random(20260504)
    t0 = dt.datetime(2026, 5, 4, 8, 0, tzinfo=dt.UTC)
    instance = azurite.start()
    try:
        storage = LakeStorage(
            LakeConfig(
                instance.blob_url,
                use_emulator=True,
                container_prefix=f"b{uuid.uuid4().hex[:8]}-",
            )
        )
        storage.ensure_containers()
        watermarks = WatermarkStore.connect(instance.table_url, use_emulator=True)
        source = MemoryMainframe(now=t0 + dt.timedelta(hours=1))
        source.tables = generate(total, t0.strftime(TS), rng)
        source.prepare()
        overlap = dt.timedelta(seconds=120)
        passes: dict[str, Any] = {}

        def timed(name: str) -> None:
            start = time.perf_counter()
            result = poll_mainframe(
                source, watermarks, storage, overlap=overlap, page_size=page_size
            )
            polled = time.perf_counter()
            gold = rebuild_gold(storage)
            done = time.perf_counter()
            passes[name] = {
                "records": result.read,
                "poll_seconds": round(polled - start, 3),
                "gold_seconds": round(done - polled, 3),
                "total_seconds": round(done - start, 3),
                "records_per_second": round(result.read / (done - start)) if result.read else None,
                "gold_rows": gold.rows,
            }

        timed("initial")
        later = t0 + dt.timedelta(hours=2)
        changed = 0
        for rows in source.tables.values():
            for row in rng.sample(rows, len(rows) // 10):
                row["LSTUPD"] = later.strftime(TS)
                changed += 1
        source.prepare()
        source.now = later + dt.timedelta(minutes=5)
        timed("changes")
        source.now = later + dt.timedelta(minutes=15)
        timed("idle")
        return {"records": total, "page_size": page_size, "changed": changed, "passes": passes}
    finally:
        instance.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    report = run(args.records, args.page_size)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
