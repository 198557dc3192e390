"""Lake throughput and memory: generated legacy records through bronze -> silver -> gold on Azurite.

Targets (issue 9): 100k legacy records at >= 12,000 records/s and at least twice dlt's throughput
merging the same records into Delta on the same storage; memory bounded by page and batch size,
not by table size, from 10k to 1M records.

One run is one child process on a fresh Azurite (``bench.harness``). The mainframe is replaced by
page files of the wire format (``bench.source``), parsed page by page as the real client parses
responses, so the figures are the hub's own cost: JSON parsing, gzip bronze uploads, polars
conformance, Delta MERGE, the run log and the gold rebuild. Three passes on one lake:

- ``initial``: every record is new (bronze + silver inserts), then gold is rebuilt;
- ``changes``: every tenth record changed (MERGE updates into the full tables), then gold;
- ``idle``: nothing changed (one listing request per entity, no blob written), then gold.

Per pass: seconds for bronze -> silver (the poll) and for gold, and the process's peak resident
memory in each (``VmHWM``, reset between phases).

    python -m bench.lake_bench --records 100000 --repeats 3        # the hub, as a table
    python -m bench.lake_bench child --pages DIR --blob-url URL --table-url URL --out FILE
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import harness, source
from bench.report import Row, median, spread_text

PASSES = ("initial", "changes", "idle")
OVERLAP = dt.timedelta(seconds=120)
CONTAINER_PREFIX = "lake-"


def _connection_string(blob_url: str) -> str:
    from sandbox.azurite import ACCOUNT, ACCOUNT_KEY

    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint={blob_url};"
    )


def child(
    pages: Path, blob_url: str, table_url: str, passes: list[str], storage_pid: int | None = None
) -> dict[str, Any]:
    """One run of the hub's lake jobs over a rendered source (in a fresh process)."""
    # The lake's libraries load before the baseline: their size is a fixed cost, not the data's.
    import deltalake  # noqa: F401
    import polars  # noqa: F401
    import pyarrow  # noqa: F401

    from shared.adapters.state import WatermarkStore
    from shared.lake.gold import rebuild_gold
    from shared.lake.storage import LakeConfig, LakeStorage
    from shared.services.poll_mainframe import poll_mainframe

    baseline = harness.rss_mib()
    rendered = source.Rendered.load(pages)
    storage = LakeStorage(
        LakeConfig(blob_url, use_emulator=True, container_prefix=CONTAINER_PREFIX)
    )
    storage.ensure_containers()
    watermarks = WatermarkStore.connect(table_url, use_emulator=True, table_name="benchwatermarks")
    feed = source.PageFileSource(rendered, now=source.INITIAL + dt.timedelta(hours=1))
    connection = _connection_string(blob_url)
    results: dict[str, Any] = {}
    for name in passes:
        if name == "changes":
            feed.generations, feed.now = 2, source.CHANGED + dt.timedelta(minutes=5)
        elif name == "idle":
            feed.now = source.CHANGED + dt.timedelta(minutes=15)
        blobs_before = sum(harness.count_blobs(connection, CONTAINER_PREFIX).values())
        requests_before = feed.requests
        storage_cpu = harness.process_cpu_seconds(storage_pid) if storage_pid else 0.0
        harness.reset_peak_rss()
        cpu = time.process_time()
        start = time.perf_counter()
        polled = poll_mainframe(
            feed, watermarks, storage, overlap=OVERLAP, page_size=rendered.page_size
        )
        poll_done = time.perf_counter()
        poll_cpu = time.process_time() - cpu
        poll_peak = harness.peak_rss_mib()
        harness.reset_peak_rss()
        gold = rebuild_gold(storage)
        done = time.perf_counter()
        total_cpu = time.process_time() - cpu
        if storage_pid:
            storage_cpu = harness.process_cpu_seconds(storage_pid) - storage_cpu
        gold_peak = harness.peak_rss_mib()
        blobs_after = sum(harness.count_blobs(connection, CONTAINER_PREFIX).values())
        results[name] = {
            "records": polled.read,
            "requests": feed.requests - requests_before,
            "poll_seconds": round(poll_done - start, 3),
            "gold_seconds": round(done - poll_done, 3),
            "total_seconds": round(done - start, 3),
            "poll_cpu_seconds": round(poll_cpu, 3),
            "total_cpu_seconds": round(total_cpu, 3),
            "storage_cpu_seconds": round(storage_cpu, 3),
            "poll_peak_rss_mib": poll_peak,
            "gold_peak_rss_mib": gold_peak,
            "rss_after_mib": harness.rss_mib(),
            "blobs_written": blobs_after - blobs_before,
            "silver_inserted": sum(e.silver_inserted for e in polled.entities.values()),
            "silver_updated": sum(e.silver_updated for e in polled.entities.values()),
            "quarantined": sum(e.quarantined for e in polled.entities.values()),
            "gold_rows": sum(gold.rows.values()),
        }
    return {
        "records": rendered.total,
        "changed": rendered.changed,
        "page_size": rendered.page_size,
        "baseline_rss_mib": baseline,
        "passes": results,
    }


def run_once(rendered: source.Rendered, passes: tuple[str, ...] = PASSES) -> dict[str, Any]:
    """One hub run in a fresh process on a fresh Azurite."""
    with harness.fresh_azurite() as instance:
        return harness.run_child(
            "bench.lake_bench",
            [
                "child",
                "--pages",
                str(rendered.folder),
                "--blob-url",
                instance.blob_url,
                "--table-url",
                instance.table_url,
                "--passes",
                ",".join(passes),
                "--storage-pid",
                str(instance.process.pid),
            ],
        )


def records_per_second(run: dict[str, Any], name: str, *, gold: bool = True) -> float:
    """Records of a pass over its seconds (bronze -> silver -> gold, or bronze -> silver)."""
    figures = run["passes"][name]
    seconds = figures["total_seconds"] if gold else figures["poll_seconds"]
    return float(figures["records"]) / seconds if seconds else float("nan")


def comparison_rows(
    hub: list[dict[str, Any]], dlt: list[dict[str, Any]], dlt_version: str | None
) -> list[Row]:
    """Throughput rows: the hub's runs beside dlt's (paired in the order they ran)."""
    records = hub[0]["records"]
    section = f"Lake: {records:,} generated legacy records on Azurite"
    unit = "records/s"
    full = [records_per_second(r, "initial") for r in hub]
    silver_only = [records_per_second(r, "initial", gold=False) for r in hub]
    changed = [records_per_second(r, "changes") for r in hub]
    cpu = [
        r["passes"]["initial"]["total_cpu_seconds"] + r["passes"]["initial"]["storage_cpu_seconds"]
        for r in hub
    ]
    name = f"dlt {dlt_version}" if dlt_version else "dlt"
    made: list[Row] = []
    if not dlt:
        made.append(
            Row.of(
                "bronze → silver → gold, initial load",
                full,
                unit,
                section=section,
                baseline="dlt not installed (make bench installs requirements-bench.txt)",
                target="≥ 12,000 records/s and ≥ 2× dlt",
                met=None,
            )
        )
        made.append(Row.of("bronze → silver only", silver_only, unit, section=section))
        made.append(
            Row.of("10% changed: MERGE into the full tables + gold", changed, unit, section=section)
        )
        return made
    dlt_full = [d["passes"]["initial"]["records"] / d["passes"]["initial"]["seconds"] for d in dlt]
    dlt_changed = [
        d["passes"]["changes"]["records"] / d["passes"]["changes"]["seconds"] for d in dlt
    ]
    dlt_cpu = [
        d["passes"]["initial"]["cpu_seconds"] + d["passes"]["initial"]["storage_cpu_seconds"]
        for d in dlt
    ]
    dlt_median = median(dlt_full)
    made.append(
        Row.of(
            "bronze → silver → gold, initial load",
            full,
            unit,
            section=section,
            baseline=f"{name} merge: {spread_text(dlt_full, unit)}",
            target="≥ 12,000 records/s and ≥ 2× dlt",
            met=lambda v: v >= 12_000 and v >= 2 * dlt_median,
            details={"seconds": [r["passes"]["initial"]["total_seconds"] for r in hub]},
        )
    )
    made.append(
        Row.of(
            "hub ÷ dlt throughput (bronze → silver → gold vs dlt merge)",
            [h / d for h, d in zip(full, dlt_full, strict=False)],
            "×",
            section=section,
            baseline="paired runs, alternating hub and dlt",
            target="≥ 2×",
            met=lambda v: v >= 2,
        )
    )
    made.append(
        Row.of(
            "bronze → silver only (like for like with dlt's merge)",
            silver_only,
            unit,
            section=section,
            baseline=f"{name} merge: {spread_text(dlt_full, unit)}",
            details={"hub_over_dlt": round(median(silver_only) / dlt_median, 2)},
        )
    )
    made.append(
        Row.of(
            f"{hub[0]['changed']:,} changed records: MERGE into the full tables (+ gold)",
            changed,
            unit,
            section=section,
            baseline=f"{name} upsert: {spread_text(dlt_changed, unit)}",
        )
    )
    made.append(
        Row.of(
            "CPU seconds of the initial load (process + Azurite)",
            cpu,
            "s",
            section=section,
            baseline=f"{name}: {spread_text(dlt_cpu, 's')}",
            details={
                "why": "wall time on a shared 2-core machine depends on the load; CPU less so",
            },
        )
    )
    return made


def main(argv: list[str] | None = None) -> int:
    """``child`` runs one measured pass set; without it, a standalone table of hub runs."""
    parser = argparse.ArgumentParser(prog="python -m bench.lake_bench", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    one = sub.add_parser("child", help="one measured run (used by the parent)")
    one.add_argument("--pages", type=Path, required=True)
    one.add_argument("--blob-url", required=True)
    one.add_argument("--table-url", required=True)
    one.add_argument("--passes", default=",".join(PASSES))
    one.add_argument("--storage-pid", type=int, default=None)
    one.add_argument("--out", type=Path, required=True)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.command == "child":
        passes = [p for p in args.passes.split(",") if p]
        harness.write_result(
            args.out,
            child(args.pages, args.blob_url, args.table_url, passes, args.storage_pid),
        )
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as tmp:
        rendered = source.render(Path(tmp), args.records)
        runs = [run_once(rendered) for _ in range(args.repeats)]
    sys.stdout.write(json.dumps(runs, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
