"""The operations dashboard: job status, rejections, reconciliation parity and gold KPIs.

Two halves, split by cost:

- ``take_snapshot`` (the ``dashboard_snapshot`` timer) reads the Delta tables — gold
  ``integration_health``, ``reconciliation_counts`` and the KPI tables, silver ``ingestion_runs`` —
  and writes a small JSON document to the blob ``gold/dashboard/snapshot.json``. It needs
  deltalake and polars, imported inside the function only.
- ``dashboard_data`` (the HTTP function) reads that one blob plus the light Azure Tables
  (watermarks, rejections) — never a Delta table, so the HTTP path loads no heavy library and a
  page view costs three storage reads however big the lake is.

``render_dashboard`` turns the data into one self-contained HTML page: inline CSS, inline SVG
bar charts drawn here, no script, no external asset; every value is escaped with ``html.escape``.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.adapters.deadletters import DeadLetters
    from shared.adapters.records import RejectionStore
    from shared.adapters.state import WatermarkStore
    from shared.lake.storage import LakeStorage

log = logging.getLogger(__name__)

SNAPSHOT_BLOB = "dashboard/snapshot.json"
SNAPSHOT_VERSION = 1
DEAD_LETTER_PEEK_LIMIT = 1000
TOP_BARS = 12
NO_NAMESPACE = "n/a (no Service Bus namespace configured)"


@dataclass(frozen=True)
class JobDefinition:
    """How a job shows up in the stores: its watermark job, run-log source and rejection flows."""

    label: str
    watermark_job: str
    run_source: str | None = None
    rejection_flows: tuple[str, ...] = ()


# The watermark job names are the constants of the services that own them (poll_mainframe.JOB,
# load_dataverse.JOB, ...); they are repeated here so this light module imports none of them.
JOBS: tuple[JobDefinition, ...] = (
    JobDefinition("Mainframe poll", "poll_mainframe", "mainframe"),
    JobDefinition("Dataverse load", "dataverse-load", None, ("dataverse-load",)),
    JobDefinition("Dataverse export", "dataverse-export", "dataverse"),
    JobDefinition("Lake ingest", "lake-ingest", "quotingtool"),
    JobDefinition("SAP inbound", "sap-inbound", None, ("sap-inbound",)),
    JobDefinition("SAP outbound", "sap-outbound", None, ("sap-outbound",)),
    JobDefinition("Quote qualification", "dataverse-changes", None, ("quote-push",)),
)


# ---- the snapshot (written by the timer, read by the page) ---------------------------------------


@dataclass(frozen=True)
class Bar:
    """One bar of a chart; ``value`` is exact, ``secondary`` an optional second series and
    ``detail`` what the value is made of (a rate's numerator and denominator, say)."""

    label: str
    value: Decimal
    secondary: Decimal | None = None
    detail: str | None = None


EMPTY_NOTE = "no data yet"


@dataclass(frozen=True)
class Chart:
    """A horizontal bar chart: title, unit and bars (largest first). ``empty_note`` says why a
    chart has no bars (which gold table is empty or not built yet)."""

    key: str
    title: str
    unit: str
    bars: tuple[Bar, ...]
    series: tuple[str, ...] = ("value",)
    empty_note: str = EMPTY_NOTE


@dataclass(frozen=True)
class HealthRow:
    """One row of gold ``integration_health``."""

    source: str
    entity: str
    runs: int
    records_in: int
    records_rejected: int
    current_rows: int
    last_success_at: str | None
    lag_seconds: float | None


@dataclass(frozen=True)
class LatestRun:
    """The newest ``ingestion_runs`` run of a source, summed over its entities."""

    source: str
    run_id: str
    finished_at: str
    records_read: int
    records_written: int
    quarantined: int


@dataclass(frozen=True)
class ParityRow:
    """One pair of the latest reconciliation run."""

    entity: str
    left: str
    right: str
    left_count: int
    right_count: int
    drift: int


@dataclass(frozen=True)
class Snapshot:
    """The gold figures the page shows, as of ``taken_at``."""

    taken_at: str
    health: tuple[HealthRow, ...] = ()
    latest_runs: tuple[LatestRun, ...] = ()
    parity: tuple[ParityRow, ...] = ()
    reconciled_at: str | None = None
    drift_by_entity: Mapping[str, int] = field(default_factory=dict)
    charts: tuple[Chart, ...] = ()
    dead_letters: Mapping[str, int] | None = None
    dead_letters_note: str = NO_NAMESPACE

    def to_json(self) -> dict[str, Any]:
        """The snapshot as the JSON document stored in the blob (decimals as strings)."""
        return {
            "version": SNAPSHOT_VERSION,
            "takenAt": self.taken_at,
            "health": [h.__dict__ for h in self.health],
            "latestRuns": [r.__dict__ for r in self.latest_runs],
            "parity": [p.__dict__ for p in self.parity],
            "reconciledAt": self.reconciled_at,
            "driftByEntity": dict(self.drift_by_entity),
            "charts": [
                {
                    "key": c.key,
                    "title": c.title,
                    "unit": c.unit,
                    "series": list(c.series),
                    "emptyNote": c.empty_note,
                    "bars": [
                        {
                            "label": b.label,
                            "value": str(b.value),
                            "secondary": None if b.secondary is None else str(b.secondary),
                            "detail": b.detail,
                        }
                        for b in c.bars
                    ],
                }
                for c in self.charts
            ],
            "deadLetters": None if self.dead_letters is None else dict(self.dead_letters),
            "deadLettersNote": self.dead_letters_note,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Snapshot:
        """Parse a stored snapshot (``ValueError`` for an unknown version or a bad shape)."""
        if doc.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unknown dashboard snapshot version {doc.get('version')!r}")
        try:
            return cls(
                taken_at=str(doc["takenAt"]),
                health=tuple(HealthRow(**h) for h in doc.get("health", [])),
                latest_runs=tuple(LatestRun(**r) for r in doc.get("latestRuns", [])),
                parity=tuple(ParityRow(**p) for p in doc.get("parity", [])),
                reconciled_at=doc.get("reconciledAt"),
                drift_by_entity={str(k): int(v) for k, v in doc.get("driftByEntity", {}).items()},
                charts=tuple(
                    Chart(
                        key=str(c["key"]),
                        title=str(c["title"]),
                        unit=str(c["unit"]),
                        series=tuple(c.get("series", ["value"])),
                        bars=tuple(
                            Bar(
                                str(b["label"]),
                                Decimal(b["value"]),
                                None if b.get("secondary") is None else Decimal(b["secondary"]),
                                None if b.get("detail") is None else str(b["detail"]),
                            )
                            for b in c["bars"]
                        ),
                        # Snapshots written before empty notes existed read as "no data yet".
                        empty_note=str(c.get("emptyNote") or EMPTY_NOTE),
                    )
                    for c in doc.get("charts", [])
                ),
                dead_letters=(
                    None
                    if doc.get("deadLetters") is None
                    else {str(k): int(v) for k, v in doc["deadLetters"].items()}
                ),
                dead_letters_note=str(doc.get("deadLettersNote") or NO_NAMESPACE),
            )
        except (KeyError, TypeError, InvalidOperation) as exc:
            raise ValueError(f"malformed dashboard snapshot: {exc}") from exc


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    return str(value)


def _decimal(value: Any) -> Decimal:
    return Decimal(0) if value is None else Decimal(str(value))


def _bars(
    rows: Iterable[Mapping[str, Any]], label: str, value: str, secondary: str | None = None
) -> tuple[Bar, ...]:
    """Sum ``value`` (and ``secondary``) per ``label``; the largest TOP_BARS, largest first.

    Amounts in different currencies are never added up: when the rows hold more than one
    currency, each bar is one label in one currency (``Northeast (CAD)``).
    """
    rows = list(rows)
    split = len({row.get("currency") for row in rows}) > 1
    totals: dict[str, list[Decimal]] = {}
    for row in rows:
        key = str(row.get(label) or "(none)")
        if split:
            key = f"{key} ({row.get('currency') or '?'})"
        sums = totals.setdefault(key, [Decimal(0), Decimal(0)])
        sums[0] += _decimal(row.get(value))
        if secondary is not None:
            sums[1] += _decimal(row.get(secondary))
    ordered = sorted(totals.items(), key=lambda kv: (-max(kv[1]), kv[0]))[:TOP_BARS]
    return tuple(
        Bar(name, sums[0], sums[1] if secondary is not None else None) for name, sums in ordered
    )


def _conversion_bars(rows: Iterable[Mapping[str, Any]]) -> tuple[Bar, ...]:
    """Conversion rate per region from the numerators and denominators (never averaged rates)."""
    sums: dict[str, list[int]] = {}
    for row in rows:
        key = str(row.get("region") or "(none)")
        pair = sums.setdefault(key, [0, 0])
        pair[0] += int(row.get("converted_quotes") or 0)
        pair[1] += int(row.get("quotes") or 0)
    bars = [
        Bar(
            name,
            (Decimal(100) * c / q).quantize(Decimal("0.1")) if q else Decimal(0),
            detail=f"{c:,} of {q:,} quotes",
        )
        for name, (c, q) in sums.items()
        if q
    ]
    # Most quotes first: a region's rate means more the more quotes it rests on.
    ordered = sorted(bars, key=lambda b: (-sums[b.label][1], -b.value, b.label))[:TOP_BARS]
    return tuple(ordered)


def _read_rows(storage: LakeStorage, layer: str, table: str) -> list[dict[str, Any]] | None:
    """A table's rows, or None when it was never written."""
    from shared.lake.delta import read_frame

    frame = read_frame(storage, layer, table)  # type: ignore[arg-type]
    return None if frame is None else list(frame.iter_rows(named=True))


def _gold_rows(storage: LakeStorage, layer: str, table: str) -> list[dict[str, Any]]:
    return _read_rows(storage, layer, table) or []


def _empty_note(table: str, rows: list[dict[str, Any]] | None) -> str:
    if rows is None:
        return f"{EMPTY_NOTE}: gold/{table} has not been built"
    return f"{EMPTY_NOTE}: gold/{table} has no rows"


def _kpi_charts(storage: LakeStorage) -> tuple[Chart, ...]:
    """The four KPI charts from their gold tables; a chart without bars says which table is
    empty rather than drawing an empty axis that reads as zero."""
    pipeline = _read_rows(storage, "gold", "pipeline_by_territory")
    forecast = _read_rows(storage, "gold", "forecast_vs_goal")
    conversion = _read_rows(storage, "gold", "quote_to_order_conversion")
    backlog = _read_rows(storage, "gold", "order_backlog")
    return (
        Chart(
            "pipeline",
            "Open pipeline by region",
            "amount",
            _bars(pipeline or [], "region", "pipeline_amount", "qualified_amount"),
            ("open pipeline", "qualified in Sales"),
            _empty_note("pipeline_by_territory", pipeline),
        ),
        Chart(
            "forecast",
            "Forecast vs goal by region",
            "amount",
            _bars(forecast or [], "region", "forecast_amount", "goal_amount"),
            ("forecast", "goal"),
            _empty_note("forecast_vs_goal", forecast),
        ),
        Chart(
            "conversion",
            "Quote-to-order conversion by region",
            "%",
            _conversion_bars(conversion or []),
            empty_note=_empty_note("quote_to_order_conversion", conversion),
        ),
        Chart(
            "backlog",
            "Order backlog by plant",
            "amount",
            _bars(backlog or [], "plant", "backlog_amount"),
            empty_note=_empty_note("order_backlog", backlog),
        ),
    )


def count_dead_letters(dead_letters: DeadLetters, queues: Sequence[str]) -> dict[str, int]:
    """Dead-lettered messages per queue, peeked (at most DEAD_LETTER_PEEK_LIMIT counted each)."""
    return {
        queue: len(dead_letters.list_messages(queue, limit=DEAD_LETTER_PEEK_LIMIT))
        for queue in queues
    }


def take_snapshot(
    storage: LakeStorage,
    *,
    dead_letters: Callable[[], Mapping[str, int]] | None = None,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> Snapshot:
    """Read the gold and silver figures the dashboard shows (heavy: deltalake and polars).

    ``dead_letters`` counts the namespace's dead letters; None means no namespace is configured.
    A namespace that cannot be reached is reported as such on the page, not as zero.
    """
    taken_at = clock()
    health = tuple(
        HealthRow(
            source=str(r["source"]),
            entity=str(r["entity"]),
            runs=int(r["runs"] or 0),
            records_in=int(r["records_in"] or 0),
            records_rejected=int(r["records_rejected"] or 0),
            current_rows=int(r["current_rows"] or 0),
            last_success_at=_iso(r["last_success_at"]),
            lag_seconds=None if r["lag_seconds"] is None else float(r["lag_seconds"]),
        )
        for r in _gold_rows(storage, "gold", "integration_health")
    )
    latest: dict[str, dict[str, Any]] = {}
    runs = _gold_rows(storage, "silver", "ingestion_runs")
    newest: dict[str, tuple[Any, str]] = {}
    for row in runs:
        mark = (row["finished_at"], str(row["run_id"]))
        if row["source"] not in newest or mark > newest[row["source"]]:
            newest[row["source"]] = mark
    for row in runs:
        finished, run_id = newest[row["source"]]
        if str(row["run_id"]) != run_id:
            continue
        into = latest.setdefault(
            row["source"],
            {"finished_at": _iso(finished), "read": 0, "written": 0, "quarantined": 0},
        )
        into["read"] += int(row["records_read"] or 0)
        into["written"] += int(row["silver_inserted"] or 0) + int(row["silver_updated"] or 0)
        into["quarantined"] += int(row["quarantined"] or 0)
    latest_runs = tuple(
        LatestRun(
            source=str(source),
            run_id=newest[source][1],
            finished_at=str(v["finished_at"]),
            records_read=v["read"],
            records_written=v["written"],
            quarantined=v["quarantined"],
        )
        for source, v in sorted(latest.items())
    )
    counts = _gold_rows(storage, "gold", "reconciliation_counts")
    reconciled = max((r["run_at"] for r in counts), default=None)
    parity = tuple(
        ParityRow(
            entity=str(r["entity"]),
            left=str(r["left"]),
            right=str(r["right"]),
            left_count=int(r["left_count"]),
            right_count=int(r["right_count"]),
            drift=int(r["drift"]),
        )
        for r in sorted(counts, key=lambda r: (r["entity"], r["left"], r["right"]))
        if r["run_at"] == reconciled
    )
    drift_by_entity: dict[str, int] = {}
    for row in _gold_rows(storage, "gold", "reconciliation"):
        if row["run_at"] == reconciled:
            drift_by_entity[str(row["entity"])] = drift_by_entity.get(str(row["entity"]), 0) + 1
    charts = _kpi_charts(storage)
    letters: Mapping[str, int] | None = None
    note = NO_NAMESPACE
    if dead_letters is not None:
        try:
            letters = dict(dead_letters())
            note = ""
        except Exception as exc:  # any failure means "unknown", never zero
            log.warning("dashboard: dead-letter count failed: %s", type(exc).__name__)
            note = f"n/a (Service Bus not reachable: {type(exc).__name__})"
    return Snapshot(
        taken_at=taken_at.isoformat(),
        health=health,
        latest_runs=latest_runs,
        parity=parity,
        reconciled_at=_iso(reconciled),
        drift_by_entity=drift_by_entity,
        charts=charts,
        dead_letters=letters,
        dead_letters_note=note,
    )


def write_snapshot(storage: LakeStorage, snapshot: Snapshot) -> None:
    """Store the snapshot as ``gold/dashboard/snapshot.json`` (replacing the previous one)."""
    from azure.storage.blob import ContentSettings

    container = storage.ensure_container("gold")
    storage.blob_service.get_blob_client(container, SNAPSHOT_BLOB).upload_blob(
        json.dumps(snapshot.to_json(), sort_keys=True).encode("utf-8"),
        overwrite=True,
        content_settings=ContentSettings(content_type="application/json"),
    )


def read_snapshot(storage: LakeStorage) -> Snapshot | None:
    """The stored snapshot, or None when the timer has not written one yet."""
    from azure.core.exceptions import ResourceNotFoundError

    blob = storage.blob_service.get_blob_client(storage.container("gold"), SNAPSHOT_BLOB)
    try:
        text = blob.download_blob().readall()
    except ResourceNotFoundError:
        return None
    return Snapshot.from_json(json.loads(text))


# ---- the page's data -----------------------------------------------------------------------------


@dataclass(frozen=True)
class JobStatus:
    """One job's row on the page."""

    label: str
    watermark_job: str
    last_run: str | None
    status: str  # ok | attention | never run
    records_in: int | None
    records_out: int | None
    lag_seconds: float | None
    errors: int | None
    rejections: int
    entities: int


@dataclass(frozen=True)
class DashboardData:
    """Everything the page shows."""

    generated_at: str
    jobs: tuple[JobStatus, ...]
    rejections_by_flow: Mapping[str, int]
    snapshot: Snapshot | None


def _job_status(
    job: JobDefinition,
    marks: Sequence[tuple[str, dt.datetime | None]],
    rejections: Mapping[str, int],
    snapshot: Snapshot | None,
) -> JobStatus:
    times = [_iso(at) for _, at in marks if at is not None]
    run = None
    lag: float | None = None
    if snapshot is not None and job.run_source is not None:
        run = next((r for r in snapshot.latest_runs if r.source == job.run_source), None)
        lags = [
            h.lag_seconds
            for h in snapshot.health
            if h.source == job.run_source and h.lag_seconds is not None
        ]
        lag = max(lags) if lags else None
        if run is not None:
            times.append(run.finished_at)
    refused = sum(rejections.get(flow, 0) for flow in job.rejection_flows)
    errors = run.quarantined if run is not None else None
    last = max((t for t in times if t), default=None)
    status = "never run" if last is None else "attention" if refused or errors else "ok"
    return JobStatus(
        label=job.label,
        watermark_job=job.watermark_job,
        last_run=last,
        status=status,
        records_in=run.records_read if run is not None else None,
        records_out=run.records_written if run is not None else None,
        lag_seconds=lag,
        errors=errors,
        rejections=refused,
        entities=len(marks),
    )


def dashboard_data(
    storage: LakeStorage,
    watermarks: WatermarkStore,
    rejections: RejectionStore,
    *,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> DashboardData:
    """Gather the page's data: the snapshot blob, watermarks and rejections (all light reads)."""
    snapshot = read_snapshot(storage)
    by_job: dict[str, list[tuple[str, dt.datetime | None]]] = {}
    for mark in watermarks.list():
        by_job.setdefault(mark.job, []).append((mark.entity, mark.updated_at))
    by_flow: dict[str, int] = {}
    for rejection in rejections.list():
        by_flow[rejection.flow] = by_flow.get(rejection.flow, 0) + 1
    jobs = tuple(_job_status(j, by_job.get(j.watermark_job, []), by_flow, snapshot) for j in JOBS)
    return DashboardData(clock().isoformat(), jobs, dict(sorted(by_flow.items())), snapshot)


# ---- rendering -----------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1b1f24;
background:#f6f7f9}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#57606a;font-size:13px}
table{border-collapse:collapse;background:#fff;font-size:13px;width:100%}
th,td{border:1px solid #d0d7de;padding:5px 8px;text-align:left}
th{background:#eef1f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37;font-weight:600}.attention,.failed{color:#b35900;font-weight:600}
.never{color:#57606a}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:16px}
.chart{background:#fff;border:1px solid #d0d7de;padding:8px}
.warn{background:#fff8c5;border:1px solid #d4a72c;padding:8px}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: int | float | Decimal | None, places: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{places}f}"


def _lag(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_chart(chart: Chart, width: int = 640) -> str:
    """One chart as inline SVG: a horizontal bar per label, values printed exactly."""
    label_w, value_w, bar_h, gap = 150, 150, 14, 6
    series = len(chart.series)
    row_h = bar_h * series + gap
    height = 34 + max(1, len(chart.bars)) * row_h + (18 if series > 1 else 0)
    plot_w = width - label_w - value_w
    top = max([b.value for b in chart.bars] + [b.secondary or Decimal(0) for b in chart.bars] + [1])
    colours = ("#2f6feb", "#b0b8c1")
    parts = [
        f'<svg role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="{_e(chart.title)}">',
        f'<text x="0" y="16" font-size="14" font-weight="600">{_e(chart.title)}</text>',
    ]
    if not chart.bars:
        parts.append(
            f'<text x="0" y="44" font-size="12" fill="#57606a" data-empty="true">'
            f"{_e(chart.empty_note)}</text>"
        )
    suffix = "%" if chart.unit == "%" else ""
    for i, bar in enumerate(chart.bars):
        y = 30 + i * row_h
        parts.append(
            f'<text x="{label_w - 6}" y="{y + bar_h - 3}" font-size="12" '
            f'text-anchor="end">{_e(bar.label[:22])}</text>'
        )
        values = [bar.value] if series == 1 else [bar.value, bar.secondary or Decimal(0)]
        detail = f" ({bar.detail})" if bar.detail else ""
        for s, value in enumerate(values):
            w = max(0.0, float(value / top) * plot_w) if top else 0.0
            yy = y + s * bar_h
            parts.append(
                f'<rect x="{label_w}" y="{yy}" width="{w:.1f}" height="{bar_h - 2}" '
                f'fill="{colours[s]}"><title>{_e(chart.series[s])}: {_e(value)}</title></rect>'
                f'<text x="{label_w + w + 4:.1f}" y="{yy + bar_h - 4}" font-size="11">'
                f"{_e(_num(value, 1 if suffix else 2))}{suffix}{_e(detail if s == 0 else '')}"
                "</text>"
            )
    if series > 1 and chart.bars:
        y = height - 10
        for s, name in enumerate(chart.series):
            x = label_w + s * 110
            parts.append(
                f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{colours[s]}"/>'
                f'<text x="{x + 14}" y="{y}" font-size="11">{_e(name)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def render_charts(charts: Iterable[Chart]) -> str:
    """The KPI charts as a grid of inline SVGs."""
    cells = "".join(f'<div class="chart">{render_chart(c)}</div>' for c in charts)
    return f'<div class="charts">{cells}</div>'


def _status(text: str) -> str:
    css = "never" if text == "never run" else text
    return f'<span class="{_e(css)}">{_e(text)}</span>'


def _jobs_section(data: DashboardData) -> str:
    rows = [
        (
            f"{_e(j.label)}<br><small>{_e(j.watermark_job)}</small>",
            _e(j.last_run or "never"),
            _status(j.status),
            _num(j.records_in),
            _num(j.records_out),
            _e(_lag(j.lag_seconds)),
            _num(j.errors),
            _num(j.rejections),
            _num(j.entities),
        )
        for j in data.jobs
    ]
    return _table(
        (
            "Job",
            "Last run (UTC)",
            "Status",
            "Records in",
            "Records out",
            "Lag behind source",
            "Errors (quarantined)",
            "Rejections",
            "Watermarks",
        ),
        rows,
        {3, 4, 6, 7, 8},
    )


def _health_section(snapshot: Snapshot) -> str:
    if not snapshot.health:
        return '<p class="meta">No ingestion run recorded yet.</p>'
    return _table(
        ("Source", "Entity", "Runs", "Records in", "Rejected", "Rows", "Last success", "Lag"),
        (
            (
                _e(h.source),
                _e(h.entity),
                _num(h.runs),
                _num(h.records_in),
                _num(h.records_rejected),
                _num(h.current_rows),
                _e(h.last_success_at or "—"),
                _e(_lag(h.lag_seconds)),
            )
            for h in snapshot.health
        ),
        {2, 3, 4, 5},
    )


def _parity_section(snapshot: Snapshot) -> str:
    if not snapshot.parity:
        return '<p class="meta">No reconciliation run yet.</p>'
    rows = [
        (
            _e(p.entity),
            _e(f"{p.left} ↔ {p.right}"),
            _num(p.left_count),
            _num(p.right_count),
            _num(p.drift),
            _status("ok" if p.drift == 0 and p.left_count == p.right_count else "attention"),
        )
        for p in snapshot.parity
    ]
    when = f'<p class="meta">Latest run: {_e(snapshot.reconciled_at)}</p>'
    return when + _table(("Entity", "Pair", "Left", "Right", "Drift", "Parity"), rows, {2, 3, 4})


def _letters_section(data: DashboardData) -> str:
    by_flow = (
        _table(
            ("Flow", "Rejected"),
            ((_e(flow), _num(n)) for flow, n in data.rejections_by_flow.items()),
            {1},
        )
        if data.rejections_by_flow
        else ""
    )
    snapshot = data.snapshot
    if snapshot is None or snapshot.dead_letters is None:
        note = snapshot.dead_letters_note if snapshot is not None else NO_NAMESPACE
        letters = f"<p>Dead-lettered messages: {_e(note)}</p>"
    else:
        letters = _table(
            ("Queue", "Dead-lettered"),
            ((_e(q), _num(n)) for q, n in sorted(snapshot.dead_letters.items())),
            {1},
        )
    total = sum(data.rejections_by_flow.values())
    return f"<p>Rejections recorded: <strong>{_num(total)}</strong></p>{by_flow}{letters}"


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>{body}</body></html>"
    )


def render_dashboard(data: DashboardData) -> str:
    """The dashboard as one self-contained HTML page (no script, no external asset)."""
    snapshot = data.snapshot
    if snapshot is None:
        taken = (
            '<p class="warn">No gold snapshot yet: the <code>dashboard_snapshot</code> timer '
            "has not run. Job status and rejections below are live.</p>"
        )
        gold = ""
    else:
        taken = (
            f'<p class="meta">Gold figures as of the snapshot taken at '
            f"<strong>{_e(snapshot.taken_at)}</strong>; job status and rejections are live.</p>"
        )
        gold = (
            f"<h2>Ingestion health (gold integration_health)</h2>{_health_section(snapshot)}"
            f"<h2>Reconciliation parity</h2>{_parity_section(snapshot)}"
            f"<h2>Gold KPIs</h2>{render_charts(snapshot.charts)}"
        )
    body = (
        "<h1>Contoso Data Hub — operations</h1>"
        f'<p class="meta">Page generated at {_e(data.generated_at)}</p>{taken}'
        f"<h2>Jobs</h2>{_jobs_section(data)}"
        f"<h2>Rejections and dead letters</h2>{_letters_section(data)}{gold}"
    )
    return _page("Contoso Data Hub — operations", body)


def render_report(summary: Mapping[str, Any], charts: Iterable[Chart]) -> str:
    """The ``make demo`` report: every step with status, seconds and counts, then the charts."""
    rows = [
        (
            _e(step.get("step")),
            _status("ok" if step.get("status") == "ok" else "failed"),
            _num(step.get("seconds"), 3),
            f"<pre>{_e(json.dumps(step.get('counts', step.get('error')), indent=1, default=str))}"
            "</pre>",
        )
        for step in summary.get("steps", [])
    ]
    body = (
        "<h1>Contoso Data Hub — demo run</h1>"
        f'<p class="meta">seed {_e(summary.get("seed"))}, scale {_e(summary.get("scale"))}, '
        f"result {_status('ok' if summary.get('status') == 'ok' else 'failed')}</p>"
        f"<h2>Steps</h2>{_table(('Step', 'Status', 'Seconds', 'Counts'), rows, {2})}"
        f"<h2>Gold KPIs</h2>{render_charts(charts)}"
    )
    return _page("Contoso Data Hub — demo report", body)


# ---- the composition -----------------------------------------------------------------------------


@dataclass
class Dashboard:
    """The dashboard's collaborators (built once by ``shared.wiring``)."""

    storage: LakeStorage
    watermarks: WatermarkStore
    rejections: RejectionStore
    dead_letters: Callable[[], Mapping[str, int]] | None = None

    def snapshot(self) -> Snapshot:
        """Take and store a new snapshot of the gold figures (the timer's job; heavy)."""
        taken = take_snapshot(self.storage, dead_letters=self.dead_letters)
        write_snapshot(self.storage, taken)
        log.info(
            "dashboard snapshot: %d health rows, %d parity rows",
            len(taken.health),
            len(taken.parity),
        )
        return taken

    def data(self) -> DashboardData:
        """The page's data (light)."""
        return dashboard_data(self.storage, self.watermarks, self.rejections)

    def html(self) -> str:
        """The rendered page."""
        return render_dashboard(self.data())
