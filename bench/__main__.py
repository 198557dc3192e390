"""``make bench``: the hub's benchmarks, each run several times, reported as median and spread.

Writes ``out/bench.json`` and prints a table. Benchmarks measure; they assert nothing (targets
are printed beside the figures so a reader sees the margin).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "out"


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "runs": len(values),
    }


def bench_lake(records: int, runs: int) -> dict[str, Any]:
    from bench import lake_bench

    samples = [lake_bench.run(records, 1000) for _ in range(runs)]
    initial = [s["passes"]["initial"]["records_per_second"] for s in samples]
    changes = [s["passes"]["changes"]["records_per_second"] for s in samples]
    idle = samples[-1]["passes"]["idle"]
    return {
        "records": records,
        "initial_records_per_second": _summary(initial),
        "changes_records_per_second": _summary(changes),
        "idle_pass": idle,
        "target_records_per_second": 12_000,
    }


def bench_dataverse(runs: int) -> dict[str, Any]:
    from bench import dataverse_bench

    samples = [dataverse_bench.run(10_000, 20, 200) for _ in range(runs)]
    return {
        "rows": 10_000,
        "requests_per_1000_rows": _summary(
            [s["latency_20ms"]["requests_per_1000_rows"] for s in samples]
        ),
        "seconds_at_20ms": _summary([s["latency_20ms"]["seconds"] for s in samples]),
        "rows_per_minute_at_0ms": _summary([s["no_latency"]["rows_per_minute"] for s in samples]),
        "speedup_vs_one_patch_per_record": _summary([s["speedup_wall_time"] for s in samples]),
        "fewer_requests_factor": _summary([s["fewer_requests_factor"] for s in samples]),
        "target_requests_per_1000_rows": 2,
    }


BENCHES: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "lake": lambda a: bench_lake(a.records, a.runs),
    "dataverse": lambda a: bench_dataverse(a.runs),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--only", choices=sorted(BENCHES), action="append")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": {},
    }
    for name in args.only or list(BENCHES):
        sys.stderr.write(f"bench {name} ...\n")
        report["results"][name] = BENCHES[name](args)
    OUT.mkdir(exist_ok=True)
    (OUT / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    for name, result in report["results"].items():
        sys.stdout.write(f"\n== {name}\n{json.dumps(result, indent=2)}\n")
    sys.stdout.write("\nwritten: out/bench.json\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
