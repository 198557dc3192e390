"""Lake scaling: the same lake run at 10k, 100k and 1M records; time and peak memory per scale.

Target (issue 9): show how time and peak memory grow, and that memory is bounded by page and
batch size, not by table size. Each run is ``bench.lake_bench.run_once`` (a fresh process on a
fresh Azurite), so its peak resident memory (``VmHWM``) is that run's alone.

What bounds memory, by construction: the listing holds at most ``MAX_PAGES_IN_FLIGHT`` pages
(``shared.services.poll_mainframe``), a silver stage at most ``DEFAULT_MAX_STAGED_ROWS`` rows
before it MERGEs (``shared.lake.silver``), and each MERGE limits its target scan to the batch's
key range. So peak memory grows with the batch until the batch reaches its cap (100k rows), and
beyond that stays flat however large the tables get. The scale at which memory is judged is
therefore the largest one against the smallest one that fills a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.report import Row, fmt

SCALES = (10_000, 100_000, 1_000_000)
QUICK_SCALES = (5_000, 20_000)
MEMORY_GROWTH_LIMIT = 1.5
"""Peak memory at the largest scale may be at most this many times that at the reference."""


def peak_mib(run: dict[str, Any], name: str = "initial") -> float:
    """A run's peak resident memory in one pass, over its poll and gold phases."""
    figures = run["passes"][name]
    return float(max(figures["poll_peak_rss_mib"], figures["gold_peak_rss_mib"]))


def rows(runs: dict[int, list[dict[str, Any]]]) -> list[Row]:
    """Time and memory rows per scale, and the verdict on memory growth."""
    section = "Lake scaling: bronze → silver → gold (each run a fresh process)"
    made: list[Row] = []
    scales = sorted(runs)
    for scale in scales:
        samples = runs[scale]
        label = f"{scale:,} records"
        initial = [s["passes"]["initial"]["total_seconds"] for s in samples]
        changes = [s["passes"]["changes"]["total_seconds"] for s in samples]
        made.append(
            Row.of(
                f"{label}: initial load, time",
                initial,
                "s",
                section=section,
                details={
                    "records_per_second": [
                        round(scale / s["passes"]["initial"]["total_seconds"]) for s in samples
                    ],
                    "poll_seconds": [s["passes"]["initial"]["poll_seconds"] for s in samples],
                    "gold_seconds": [s["passes"]["initial"]["gold_seconds"] for s in samples],
                    "cpu_seconds": [s["passes"]["initial"]["total_cpu_seconds"] for s in samples],
                    "storage_cpu_seconds": [
                        s["passes"]["initial"]["storage_cpu_seconds"] for s in samples
                    ],
                },
            )
        )
        made.append(
            Row.of(
                f"{label}: 10% changed, MERGE into the full tables, time",
                changes,
                "s",
                section=section,
                details={
                    "changed": samples[0]["changed"],
                    "poll_seconds": [s["passes"]["changes"]["poll_seconds"] for s in samples],
                    "gold_seconds": [s["passes"]["changes"]["gold_seconds"] for s in samples],
                },
            )
        )
        for name, what in (("initial", "initial load"), ("changes", "10% changed")):
            made.append(
                Row.of(
                    f"{label}: {what}, peak memory (RSS high-water mark)",
                    [peak_mib(s, name) for s in samples],
                    "MiB",
                    section=section,
                    details={
                        "baseline_rss_mib": samples[0]["baseline_rss_mib"],
                        "poll": [s["passes"][name]["poll_peak_rss_mib"] for s in samples],
                        "gold": [s["passes"][name]["gold_peak_rss_mib"] for s in samples],
                    },
                )
            )
    if len(scales) >= 2:
        small, large = scales[0], scales[-1]
        reference = next((s for s in scales if s >= 100_000), scales[-2])
        peaks = {s: [peak_mib(r) for r in runs[s]] for s in scales}
        growth = [
            big / ref for big, ref in zip(peaks[large], peaks[reference], strict=False) if ref
        ]
        time_growth = [
            a["passes"]["initial"]["total_seconds"] / b["passes"]["initial"]["total_seconds"]
            for a, b in zip(runs[large], runs[small], strict=False)
        ]
        made.append(
            Row.of(
                f"initial-load peak memory, {large:,} ÷ {reference:,} records",
                growth,
                "×",
                section=section,
                baseline=f"table size {large // reference:,}×",
                target=f"bounded by page and batch size (≤ {MEMORY_GROWTH_LIMIT}×)",
                met=lambda g: g <= MEMORY_GROWTH_LIMIT,
                shown=lambda g: fmt(g, "×"),
            )
        )
        made.append(
            Row.of(
                f"initial-load time, {large:,} ÷ {small:,} records",
                time_growth,
                "×",
                section=section,
                baseline=f"records {large // small:,}×",
                target="—",
            )
        )
    return made


def describe(scales: Sequence[int]) -> str:
    """The scales as text, for progress messages."""
    return " -> ".join(f"{s:,}" for s in scales)
