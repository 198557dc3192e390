"""Dataverse load: rows upserted through the hub's DataverseClient against the sandbox peer.

Measures HTTP requests per 1,000 rows (target: at most 2) and wall time, for the hub's bulk path
(UpsertMultiple in chunks, $batch fallback, parallel by x-ms-dop-hint) and, for comparison, for a
one-PATCH-per-record loop — the shape of a Logic Apps / Power Automate "for each" — on a smaller
sample, since at 20 ms per request a 10,000-row loop alone takes minutes.

    python -m bench.dataverse_bench [--rows 10000] [--latency-ms 20] [--loop-rows 500]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.report import Row, spread_text
from sandbox import tls as tls_mod
from sandbox.dataverse import DataversePeer
from sandbox.entra import Issuer
from shared.adapters.dataverse import DataverseClient, UpsertRow
from shared.http import HttpClient, RetryPolicy, make_session


def _rows(count: int, run: str) -> list[UpsertRow]:
    return [
        UpsertRow(
            key={"contoso_ordernumber": f"{run}{i:06d}"[-10:]},
            values={
                "contoso_name": f"Legacy order {i}",
                "contoso_customernumber": f"C{i % 500:07d}",
                "contoso_status": "O",
                "contoso_currency": "USD",
                "contoso_totalamount": Decimal(f"{1000 + i}.25"),
                "contoso_plant": "P100",
            },
        )
        for i in range(count)
    ]


def run(rows: int, latency_ms: int, loop_rows: int) -> dict[str, Any]:
    tls = tls_mod.create(Path(tempfile.mkdtemp(prefix="bench-tls-")))
    issuer = Issuer()
    peer = DataversePeer(issuer, tls=tls)
    url = peer.start()
    try:
        session = make_session(tls.ca_path, pool_size=32)

        def token(force: bool = False) -> str:
            return issuer.issue("bench-client", url)

        def client() -> DataverseClient:
            http = HttpClient(session, policy=RetryPolicy(6, 0.05, 5), token=token, name="bench")
            return DataverseClient(http, url)

        results: dict[str, Any] = {"rows": rows, "latency_ms": latency_ms}
        for label, latency in (("no_latency", 0), (f"latency_{latency_ms}ms", latency_ms)):
            peer.reset()
            if latency:
                session.put(f"{url}/_sandbox/faults", json={"latencyMs": latency})
            batch = _rows(rows, uuid.uuid4().hex[:4])
            start = time.perf_counter()
            result = client().upsert_many("contoso_legacyorders", "contoso_legacyorder", batch)
            seconds = time.perf_counter() - start
            results[label] = {
                "landed": result.landed,
                "requests": result.requests,
                "requests_per_1000_rows": round(result.requests_per_1000_rows, 2),
                "seconds": round(seconds, 3),
                "rows_per_minute": round(rows / seconds * 60),
            }
            if latency:
                loop = _rows(loop_rows, uuid.uuid4().hex[:4])
                loop_client = client()
                start = time.perf_counter()
                for row in loop:
                    loop_client.upsert("contoso_legacyorders", row.key, row.values)
                loop_seconds = time.perf_counter() - start
                per_row = loop_seconds / loop_rows
                results["one_patch_per_record_loop"] = {
                    "rows_measured": loop_rows,
                    "requests_per_1000_rows": 1000,
                    "seconds_per_row": round(per_row, 4),
                    "extrapolated_seconds_for_rows": round(per_row * rows, 1),
                }
                results["speedup_wall_time"] = round(per_row * rows / seconds, 1)
                results["fewer_requests_factor"] = round(rows / max(result.requests, 1), 1)
        return results
    finally:
        peer.stop()


def rows(samples: list[dict[str, Any]]) -> list[Row]:
    """The Dataverse figures of several runs, against the issue's targets."""
    rows_loaded = samples[0]["rows"]
    latency = samples[0]["latency_ms"]
    timed = f"latency_{latency}ms"
    section = f"Dataverse load: {rows_loaded:,} rows (flow 6)"
    loop = [s["one_patch_per_record_loop"]["extrapolated_seconds_for_rows"] for s in samples]
    return [
        Row.of(
            "requests per 1,000 rows",
            [s[timed]["requests_per_1000_rows"] for s in samples],
            "requests",
            section=section,
            baseline="one PATCH per record: 1,000 requests",
            target="≤ 2",
            met=lambda v: v <= 2,
        ),
        Row.of(
            "fewer requests than one PATCH per record",
            [s["fewer_requests_factor"] for s in samples],
            "×",
            section=section,
            target="≥ 500×",
            met=lambda v: v >= 500,
        ),
        Row.of(
            f"wall time at {latency} ms per request",
            [s[timed]["seconds"] for s in samples],
            "s",
            section=section,
            baseline=f"one PATCH per record: {spread_text(loop, 's')} (extrapolated)",
        ),
        Row.of(
            f"wall-time speed-up over one PATCH per record ({latency} ms)",
            [s["speedup_wall_time"] for s in samples],
            "×",
            section=section,
            target="≥ 20×",
            met=lambda v: v >= 20,
        ),
        Row.of(
            "client ceiling at 0 ms latency",
            [s["no_latency"]["rows_per_minute"] for s in samples],
            "rows/min",
            section=section,
            target="≥ 50,000 rows/min",
            met=lambda v: v >= 50_000,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--loop-rows", type=int, default=500)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.rows, args.latency_ms, args.loop_rows), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
