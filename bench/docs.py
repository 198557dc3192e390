"""Write the figures of ``out/bench.json`` into ``docs/performance.md``, between its markers.

Only the part between ``<!-- bench:figures:begin -->`` and ``<!-- bench:figures:end -->`` is
generated (the machine, the date, one table per suite); the prose around it is written by hand.
A quick run (``python -m bench --quick``) is refused unless ``--force``: its small scales are a
smoke test, not the figures the document records.

    python -m bench.docs [--report out/bench.json] [--doc docs/performance.md] [--force]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.report import BENCH_JSON, ROOT, markdown_tables, rows_of

DOC = ROOT / "docs" / "performance.md"
BEGIN = "<!-- bench:figures:begin -->"
END = "<!-- bench:figures:end -->"


def machine_line(report: dict[str, Any]) -> str:
    """Where and when the figures were measured, in one paragraph."""
    m = report.get("machine", {})
    packages = ", ".join(f"{k} {v}" for k, v in sorted(m.get("packages", {}).items()))
    load = m.get("load_average_at_start")
    parts = [
        f"Measured {report.get('started', '?')} by `make bench` "
        f"({report.get('elapsed_seconds', '?')} s in all), each figure the median of "
        f"{report.get('repeats', '?')} runs with its min–max.",
        f"Machine: {m.get('cores', '?')} cores ({m.get('cpu', '?')}), "
        f"{m.get('memory_gib', '?')} GiB, {m.get('platform', '?')}, "
        f"Python {m.get('python', '?')}, Azurite {m.get('azurite', '?')}; {packages}.",
    ]
    if load:
        parts.append(
            f"Load average when the run started: {', '.join(str(x) for x in load)} "
            "(above 0.5 means other work shared the machine, and wall-time figures suffer)."
        )
    return " ".join(parts)


def render(report: dict[str, Any]) -> str:
    """The generated block, markers included."""
    body = [BEGIN, "", machine_line(report), "", markdown_tables(rows_of(report)).rstrip()]
    skipped = report.get("skipped") or {}
    failed = report.get("failed") or {}
    notes = [f"- `{name}` not run: {why}" for name, why in skipped.items()]
    notes += [f"- `{name}` failed: {why}" for name, why in failed.items()]
    if notes:
        body += ["", *notes]
    body += ["", END]
    return "\n".join(body)


def update(doc: Path, report: dict[str, Any]) -> bool:
    """Replace the block between the markers; True when the file changed."""
    text = doc.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{doc}: markers {BEGIN} ... {END} not found")
    updated = text[:start] + render(report) + text[end + len(END) :]
    if updated == text:
        return False
    doc.write_text(updated)
    return True


def main(argv: list[str] | None = None) -> int:
    """Rewrite the figures of the performance document from the last report."""
    parser = argparse.ArgumentParser(prog="python -m bench.docs", description=__doc__)
    parser.add_argument("--report", type=Path, default=BENCH_JSON)
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--force", action="store_true", help="accept a --quick report")
    args = parser.parse_args(argv)
    report = json.loads(args.report.read_text())
    if report.get("quick") and not args.force:
        sys.stderr.write(f"{args.report} is a --quick run; not writing it into {args.doc}\n")
        return 1
    changed = update(args.doc, report)
    sys.stdout.write(f"{args.doc}: {'updated' if changed else 'unchanged'}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
