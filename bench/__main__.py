"""``make bench``: every benchmark side by side, each figure the median of several runs.

Prints one table and writes ``out/bench.json`` (rows in the shape of ``bench.report.Row``);
``python -m bench.docs`` then writes the figures into ``docs/performance.md``. Benchmarks measure
and assert nothing: each row carries its target and whether the median met it.

    python -m bench                      # everything, 3 runs per figure
    python -m bench --repeats 3 --quick  # small scales, for a smoke run
    python -m bench --only lake --only reread

Suites:

- ``lake``: 100k generated records through bronze -> silver -> gold, beside dlt merging the same
  records into Delta on the same Azurite, and the same lake run at 10k, 100k and 1M records for
  time and peak memory (``bench.lake_bench``, ``bench.dlt_bench``, ``bench.scaling``);
- ``reread``: a changed-only poll of an unchanged 100k-record mainframe against a full re-read
  (``bench.reread_bench``);
- ``dataverse``: 10,000 rows loaded through UpsertMultiple against one PATCH per record
  (``bench.dataverse_bench``);
- ``hub``: the hub's own latency figures, when ``bench.hub_bench`` is present.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from bench import report as reporting
from bench.report import Row

SUITES = ("lake", "reread", "dataverse", "hub")
LAKE_RECORDS = 100_000
QUICK_LAKE_RECORDS = 10_000


def _say(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def suite_lake(args: argparse.Namespace) -> tuple[list[Row], dict[str, Any]]:
    """Throughput beside dlt, then scaling; the comparison's hub runs count for scaling too."""
    from bench import dlt_bench, lake_bench, scaling, source

    records = args.records or (QUICK_LAKE_RECORDS if args.quick else LAKE_RECORDS)
    scales = args.scales or (scaling.QUICK_SCALES if args.quick else scaling.SCALES)
    dlt_version = dlt_bench.available()
    hub_runs: list[dict[str, Any]] = []
    dlt_runs: list[dict[str, Any]] = []
    by_scale: dict[int, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as tmp:
        rendered = source.render(Path(tmp) / f"r{records}", records)
        for i in range(args.repeats):
            _say(f"lake {records:,} records: hub run {i + 1}/{args.repeats}")
            hub_runs.append(lake_bench.run_once(rendered))
            if dlt_version:
                _say(f"lake {records:,} records: dlt run {i + 1}/{args.repeats}")
                dlt_runs.append(dlt_bench.run_once(rendered))
        if records in scales:
            by_scale[records] = hub_runs
        for scale in scales:
            if scale in by_scale:
                continue
            folder = Path(tmp) / f"r{scale}"
            rendered_scale = source.render(folder, scale)
            by_scale[scale] = []
            for i in range(args.repeats):
                _say(f"scaling {scale:,} records: run {i + 1}/{args.repeats}")
                by_scale[scale].append(lake_bench.run_once(rendered_scale))
    rows = lake_bench.comparison_rows(hub_runs, dlt_runs, dlt_version)
    rows += scaling.rows(by_scale)
    details = {
        "records": records,
        "scales": list(scales),
        "dlt": dlt_version,
        "hub_runs": hub_runs,
        "dlt_runs": dlt_runs,
        "scaling_runs": {str(k): v for k, v in by_scale.items() if k != records},
    }
    return rows, details


def suite_reread(args: argparse.Namespace) -> tuple[list[Row], dict[str, Any]]:
    """Changed-only poll against a full re-read of the same unchanged source."""
    from bench import reread_bench

    records = args.records or (QUICK_LAKE_RECORDS if args.quick else LAKE_RECORDS)
    _say(f"reread {records:,} records: {args.repeats} x (changed-only poll, full re-read)")
    result = reread_bench.run(records, args.repeats)
    return reread_bench.rows(result), result


def suite_dataverse(args: argparse.Namespace) -> tuple[list[Row], dict[str, Any]]:
    """UpsertMultiple against one PATCH per record."""
    from bench import dataverse_bench

    rows, loop = (2_000, 100) if args.quick else (10_000, 200)
    samples = []
    for i in range(args.repeats):
        _say(f"dataverse {rows:,} rows: run {i + 1}/{args.repeats}")
        samples.append(dataverse_bench.run(rows, 20, loop))
    return dataverse_bench.rows(samples), {"runs": samples}


def _hub_module() -> ModuleType | None:
    try:
        return importlib.import_module("bench.hub_bench")
    except ModuleNotFoundError as exc:
        if exc.name != "bench.hub_bench":
            raise
        return None


def suite_hub(args: argparse.Namespace) -> tuple[list[Row], dict[str, Any]]:
    """The hub's latency figures (``bench.hub_bench.run``), when that module exists."""
    module = _hub_module()
    if module is None:
        raise _Skipped("bench/hub_bench.py is not there")
    _say("hub: latency benchmarks")
    result: dict[str, Any] = module.run(repeats=args.repeats, quick=args.quick)
    rows = [Row.from_dict(r, section="Hub") for r in result.get("rows", [])]
    return rows, {k: v for k, v in result.items() if k != "rows"}


class _Skipped(Exception):
    """A suite that cannot run here, with the reason."""


SUITE_RUNNERS: dict[str, Callable[[argparse.Namespace], tuple[list[Row], dict[str, Any]]]] = {
    "lake": suite_lake,
    "reread": suite_reread,
    "dataverse": suite_dataverse,
    "hub": suite_hub,
}


def _scales(text: str) -> tuple[int, ...]:
    return tuple(int(part.replace("_", "")) for part in text.split(",") if part)


def main(argv: list[str] | None = None) -> int:
    """Run the suites, print the table, write ``out/bench.json``."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (median, spread)")
    parser.add_argument("--quick", action="store_true", help="small scales, for a smoke run")
    parser.add_argument("--only", choices=SUITES, action="append", help="run only these suites")
    parser.add_argument("--records", type=int, default=None, help="records of the lake figures")
    parser.add_argument("--scales", type=_scales, default=None, help="e.g. 10000,100000,1000000")
    parser.add_argument("--out", type=Path, default=reporting.BENCH_JSON)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    report = reporting.new_report(repeats=args.repeats, quick=args.quick)
    started = time.perf_counter()
    rows: list[Row] = []
    for name in args.only or SUITES:
        suite_started = time.perf_counter()
        try:
            suite_rows, details = SUITE_RUNNERS[name](args)
        except _Skipped as skipped:
            report["skipped"][name] = str(skipped)
            _say(f"{name}: skipped ({skipped})")
            continue
        except Exception as exc:  # one broken suite must not lose the others
            traceback.print_exc()
            report["failed"][name] = f"{type(exc).__name__}: {exc}"
            _say(f"{name}: FAILED ({type(exc).__name__})")
            continue
        rows.extend(suite_rows)
        details["elapsed_seconds"] = round(time.perf_counter() - suite_started, 1)
        report["details"][name] = details
        # Saved after every suite, so a later failure or interruption keeps what was measured.
        report["rows"] = [r.to_dict() for r in rows]
        reporting.write(report, args.out)
    report["rows"] = [r.to_dict() for r in rows]
    report["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    path = reporting.write(report, args.out)
    sys.stdout.write("\n" + reporting.text_table(rows))
    missed = [r for r in rows if r.met is False]
    sys.stdout.write(
        f"\n{len(rows)} figures, {sum(r.met is True for r in rows)} targets met, "
        f"{len(missed)} missed; {report['elapsed_seconds']:.0f} s; written: {path}\n"
    )
    for name, why in report["failed"].items():
        sys.stdout.write(f"suite {name} FAILED: {why}\n")
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
