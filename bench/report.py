"""The shape every benchmark reports in, and how a report is summarised, printed and saved.

A benchmark returns rows. One row is one figure the issue asks for, measured several times:

    {"what": str,                  # what was measured, e.g. "Lake: 100k records, bronze -> gold"
     "hub": str | float,           # the hub's figure as shown to a reader ("20,489 records/s")
     "baseline": str | None,       # what it is compared with, shown the same way (None: nothing)
     "target": str,                # the issue's target, as text ("≥ 12,000 records/s")
     "met": bool | None,           # whether the median meets the target (None: no target)
     "median": float,              # the hub's median over the runs, in ``unit``
     "spread": [float, float],     # min and max over the runs
     "unit": str,                  # "records/s", "s", "MiB", "requests", ...
     "section": str,               # optional: the table the row belongs to ("Lake", ...)
     "runs": int}                  # optional: how many runs the median is over

``Row`` is that shape as a dataclass; ``Row.of`` builds one from samples. Benchmarks that live in
their own modules may return plain dicts of the same shape (``Row.from_dict`` reads them).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out"
BENCH_JSON = OUT / "bench.json"


@dataclass(frozen=True)
class Row:
    """One figure: the hub's median with its spread, beside its baseline and target."""

    what: str
    hub: str | float
    baseline: str | None
    target: str
    met: bool | None
    median: float
    spread: tuple[float, float]
    unit: str
    section: str = ""
    runs: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        what: str,
        samples: Sequence[float],
        unit: str,
        *,
        section: str,
        baseline: str | None = None,
        target: str = "—",
        met: Callable[[float], bool] | bool | None = None,
        shown: Callable[[float], str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> Row:
        """A row from the hub's samples; ``met`` is a predicate on the median (or a verdict)."""
        if not samples:
            raise ValueError(f"{what}: no samples")
        median = float(statistics.median(samples))
        show = shown or (lambda v: fmt(v, unit))
        verdict = met(median) if callable(met) else met
        return cls(
            what=what,
            hub=show(median),
            baseline=baseline,
            target=target,
            met=verdict,
            median=round(median, 6),
            spread=(round(float(min(samples)), 6), round(float(max(samples)), 6)),
            unit=unit,
            section=section,
            runs=len(samples),
            details=details or {},
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, section: str = "") -> Row:
        """A row returned as a dict by another benchmark module (see the module docstring)."""
        low, high = data["spread"]
        return cls(
            what=str(data["what"]),
            hub=data["hub"],
            baseline=data.get("baseline"),
            target=str(data.get("target", "—")),
            met=data.get("met"),
            median=float(data["median"]),
            spread=(float(low), float(high)),
            unit=str(data.get("unit", "")),
            section=str(data.get("section") or section),
            runs=int(data.get("runs", 0)),
            details=dict(data.get("details", {})),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``spread`` as a list)."""
        data = asdict(self)
        data["spread"] = list(self.spread)
        return data

    @property
    def spread_text(self) -> str:
        """``min–max`` in the row's unit (empty when every run gave the same figure)."""
        low, high = self.spread
        if low == high:
            return ""
        return f"{fmt(low, self.unit, bare=True)}–{fmt(high, self.unit, bare=True)}"


def fmt(value: float, unit: str, *, bare: bool = False) -> str:
    """A figure for people: thousands separated, precision by size, unit appended."""
    if value != value:  # NaN
        text = "n/a"
    elif abs(value) >= 100 or float(value).is_integer():
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:,.1f}"
    elif abs(value) >= 1:
        text = f"{value:,.2f}"
    else:
        text = f"{value:.3g}"
    if bare or not unit:
        return text
    return f"{text}×" if unit == "×" else f"{text} {unit}"


def median(values: Iterable[float]) -> float:
    """The median of some samples."""
    return float(statistics.median(list(values)))


def spread_text(values: Sequence[float], unit: str) -> str:
    """``median (min–max) unit`` for a baseline's samples."""
    low, high = min(values), max(values)
    mid = median(values)
    if low == high:
        return fmt(mid, unit)
    return f"{fmt(mid, unit)} ({fmt(low, unit, bare=True)}–{fmt(high, unit, bare=True)})"


# --- The machine ---------------------------------------------------------------------------------


def _first_match(path: str, pattern: str) -> str | None:
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    found = re.search(pattern, text, re.MULTILINE)
    return found.group(1).strip() if found else None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """Where the figures came from: cores, memory, CPU, Python, the storage emulator, the load."""
    mem_kib = _first_match("/proc/meminfo", r"^MemTotal:\s+(\d+)")
    azurite = None
    package = ROOT / "node_modules" / "azurite" / "package.json"
    if package.exists():
        azurite = json.loads(package.read_text()).get("version")
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem_kib) / 1024 / 1024, 1) if mem_kib else None,
        "cpu": _first_match("/proc/cpuinfo", r"^model name\s*:\s*(.+)$") or platform.processor(),
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "azurite": azurite,
        "packages": {
            name: _version(name)
            for name in ("deltalake", "polars", "pyarrow", "dlt")
            if _version(name)
        },
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
    }


# --- The report ----------------------------------------------------------------------------------


def new_report(*, repeats: int, quick: bool) -> dict[str, Any]:
    """An empty report: when, where, how many runs per figure."""
    return {
        "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "repeats": repeats,
        "quick": quick,
        "machine": machine(),
        "rows": [],
        "details": {},
        "skipped": {},
        "failed": {},
    }


def rows_of(report: dict[str, Any]) -> list[Row]:
    """The report's rows as ``Row``s."""
    return [Row.from_dict(r) for r in report.get("rows", [])]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _verdict(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: ""}[met]


def markdown_tables(rows: Sequence[Row]) -> str:
    """One Markdown table per section, in first-seen order."""
    sections: dict[str, list[Row]] = {}
    for row in rows:
        sections.setdefault(row.section or "Other", []).append(row)
    parts: list[str] = []
    for name, members in sections.items():
        parts.append(f"### {name}\n")
        parts.append("| Figure | Hub (median) | Min–max | Runs | Baseline | Target | Met |")
        parts.append("|---|---|---|---|---|---|---|")
        for row in members:
            parts.append(
                "| "
                + " | ".join(
                    _cell(c)
                    for c in (
                        row.what,
                        f"**{row.hub}**" if row.met is not None else str(row.hub),
                        row.spread_text,
                        str(row.runs or ""),
                        row.baseline or "—",
                        row.target,
                        _verdict(row.met),
                    )
                )
                + " |"
            )
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def text_table(rows: Sequence[Row]) -> str:
    """A plain-text table for the terminal, one block per section."""
    header = ("figure", "hub (median)", "min–max", "baseline", "target", "met")
    lines = [
        (
            r.what,
            str(r.hub),
            r.spread_text,
            r.baseline or "-",
            r.target,
            {True: "yes", False: "NO", None: ""}[r.met],
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]

    def render(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [render(header), render(["-" * w for w in widths])]
    section = None
    for row, line in zip(rows, lines, strict=True):
        if row.section != section:
            section = row.section
            out.append(f"== {section or 'Other'}")
        out.append(render(line))
    return "\n".join(out) + "\n"


def write(report: dict[str, Any], path: Path = BENCH_JSON) -> Path:
    """Save the report as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return path
