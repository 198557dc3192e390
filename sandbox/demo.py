"""``make demo``: the whole flow end to end on the sandbox, as far as it exists.

Each step runs against the real app (dev HTTP adapter, local dispatcher, timers) and real peers,
and reports the counts it saw. The run ends by writing ``out/demo-summary.json`` with one entry per
step; it exits non-zero if any step failed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests

from sandbox.datagen import generate, to_jsonable
from sandbox.world import ROOT_STATE, World

log = logging.getLogger(__name__)
OUT = Path(__file__).resolve().parent.parent / "out"


@dataclass
class DemoContext:
    world: World
    seed: int
    scale: int
    http: requests.Session
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def hub(self) -> str:
        return str(self.world.hub.base_url)

    @property
    def key_header(self) -> dict[str, str]:
        return {"x-functions-key": str(self.world.hub.function_key)}


Step = Callable[[DemoContext], dict[str, Any]]


def step_sandbox(ctx: DemoContext) -> dict[str, Any]:
    endpoints = ctx.world.endpoints()
    return {"endpoints": len(endpoints), "settings": len(ctx.world.settings())}


def step_health(ctx: DemoContext) -> dict[str, Any]:
    response = ctx.http.get(f"{ctx.hub}/api/health", params={"ready": "1"}, timeout=10)
    body = response.json()
    if response.status_code != 200:
        raise RuntimeError(f"hub not ready: {body}")
    return {
        "status": response.status_code,
        "checksPassed": sum(1 for c in body["checks"].values() if c["ok"]),
    }


def _seed(ctx: DemoContext, peer: str, tables: dict[str, Any], chunk: int = 5000) -> dict[str, int]:
    counts: dict[str, int] = {}
    url = f"{ctx.world.endpoints()[peer]}/_sandbox/seed"
    for name, table in tables.items():
        rows = [to_jsonable(r) for r in table]
        for start in range(0, len(rows), chunk):
            response = ctx.http.post(url, json={name: rows[start : start + chunk]}, timeout=120)
            if response.status_code != 200:
                raise RuntimeError(f"seeding {peer}.{name} failed: {response.text[:300]}")
        counts[name] = len(rows)
    return counts


def step_generate(ctx: DemoContext) -> dict[str, Any]:
    data = generate(ctx.seed, ctx.scale)
    ctx.notes["data"] = data
    counts = _seed(ctx, "dataverse", data.dataverse_seed())
    counts |= {f"sap.{k}": v for k, v in _seed(ctx, "sap", data.sap_seed()).items()}
    counts |= {
        f"mainframe.{k}": v for k, v in _seed(ctx, "mainframe", data.mainframe_seed()).items()
    }
    counts |= _seed(ctx, "quotingTool", {"quotes": data.quoting_tool_quotes()})
    counts["plantedProblems"] = sum(sum(k.values()) for k in data.planted.counts().values())
    return counts


def step_quotes_posted(ctx: DemoContext) -> dict[str, Any]:
    peer = ctx.world.peers["quotingTool"]
    answers = peer.post_quotes_to(ctx.hub, str(ctx.world.hub.function_key), ctx.http)  # type: ignore[attr-defined]
    by_status: dict[str, int] = {}
    for response in answers:
        by_status[str(response.status_code)] = by_status.get(str(response.status_code), 0) + 1
    ctx.notes["accepted"] = [r.json()["quoteId"] for r in answers if r.status_code == 202]
    if not ctx.notes["accepted"]:
        raise RuntimeError(f"no quote was accepted: {by_status}")
    return {"posted": len(answers), "byStatus": by_status}


def step_quotes_pushed(ctx: DemoContext) -> dict[str, Any]:
    stats = ctx.world.hub.dispatcher.run_until_idle()
    statuses: dict[str, int] = {}
    for quote_id in ctx.notes["accepted"]:
        state = _status(ctx, quote_id)["status"]
        statuses[state] = statuses.get(state, 0) + 1
    records = ctx.http.get(
        f"{ctx.world.endpoints()['dataverse']}/_sandbox/records/quotes", timeout=60
    )
    dead = ctx.world.hub.dispatcher.dead_letters(ctx.world.settings()["QUOTES_QUEUE_NAME"])
    if dead:
        raise RuntimeError(f"{len(dead)} quote message(s) dead-lettered")
    return {
        "delivered": stats.deliveries,
        "byStatus": statuses,
        "dataverseQuotes": records.json()["count"],
        "deadLettered": len(dead),
    }


def step_quotes_qualified(ctx: DemoContext) -> dict[str, Any]:
    in_dataverse = [q for q in ctx.notes["accepted"] if _status(ctx, q)["status"] == "inDataverse"]
    chosen = in_dataverse[: max(1, len(in_dataverse) // 3)]
    dataverse = ctx.world.endpoints()["dataverse"]
    token = ctx.world.issuer.issue(ctx.world.test_client[0], dataverse)
    for quote_id in chosen:
        dataverse_id = _status(ctx, quote_id)["dataverseId"]
        response = ctx.http.patch(
            f"{dataverse}/api/data/v9.2/quotes({dataverse_id})",
            json={"statecode": 1, "statuscode": 2},
            headers={"Authorization": f"Bearer {token}", "If-Match": "*"},
            timeout=30,
        )
        response.raise_for_status()
    ctx.world.hub.run_timer("quote_qualification")
    ctx.world.hub.run_timer("quote_qualification")  # a second run must send nothing new
    callbacks = ctx.http.get(
        f"{ctx.world.endpoints()['quotingTool']}/_sandbox/records/callbacks", timeout=30
    ).json()["records"]
    keys = [c.get("idempotencyKey") or c.get("key") for c in callbacks]
    if len(callbacks) != len(chosen) or len(set(keys)) != len(keys):
        raise RuntimeError(f"expected {len(chosen)} distinct callbacks, got {len(callbacks)}")
    return {"qualifiedInDataverse": len(chosen), "callbacksRecorded": len(callbacks)}


def step_quote_replay(ctx: DemoContext) -> dict[str, Any]:
    log_url = f"{ctx.world.endpoints()['dataverse']}/_sandbox/requests"
    writes_before = _writes(ctx.http.get(log_url, timeout=30).json())
    peer = ctx.world.peers["quotingTool"]
    answers = peer.post_quotes_to(ctx.hub, str(ctx.world.hub.function_key), ctx.http)  # type: ignore[attr-defined]
    ctx.world.hub.dispatcher.run_until_idle()
    writes_after = _writes(ctx.http.get(log_url, timeout=30).json())
    if writes_after != writes_before:
        raise RuntimeError(f"replay caused {writes_after - writes_before} Dataverse writes")
    return {"replayed": len(answers), "newDataverseWrites": writes_after - writes_before}


def _requests(ctx: DemoContext, peer: str) -> dict[str, Any]:
    log: dict[str, Any] = ctx.http.get(
        f"{ctx.world.endpoints()[peer]}/_sandbox/requests", timeout=60
    ).json()
    return log


def _records(ctx: DemoContext, peer: str, table: str) -> int:
    url = f"{ctx.world.endpoints()[peer]}/_sandbox/records/{table}"
    return int(ctx.http.get(url, timeout=120).json()["count"])


def _blobs(ctx: DemoContext) -> int:
    from shared import wiring

    lake = wiring.lake()
    return sum(
        1
        for layer in ("bronze", "silver", "gold")
        for _ in lake.blob_service.get_container_client(lake.container(layer)).list_blobs()  # type: ignore[arg-type]
    )


def step_mainframe_poll(ctx: DemoContext) -> dict[str, Any]:
    """Flow 5 through the app's own timer, then the lake's silver row counts."""
    from shared.cli import table_counts

    before = _requests(ctx, "mainframe")["count"]
    ctx.world.hub.run_timer("mainframe_poll")
    silver = table_counts(["silver"])["silver"]
    data = ctx.notes["data"]
    planted = data.planted.counts()
    return {
        "mainframeRequests": _requests(ctx, "mainframe")["count"] - before,
        "silver": {k: v for k, v in silver.items() if not k.startswith("dataverse_")},
        "plantedInMainframe": {k: v for k, v in planted.items() if k.startswith("mainframe.")},
    }


def step_unchanged_poll(ctx: DemoContext) -> dict[str, Any]:
    """Polling an unchanged source: one listing request per entity, nothing written."""
    requests_before, blobs_before = _requests(ctx, "mainframe")["count"], _blobs(ctx)
    ctx.world.hub.run_timer("mainframe_poll")
    listings = _requests(ctx, "mainframe")["count"] - requests_before
    written = _blobs(ctx) - blobs_before
    if written:
        raise RuntimeError(f"an unchanged poll wrote {written} blob(s)")
    return {"requests": listings, "blobsWritten": written}


def step_dataverse_load(ctx: DemoContext) -> dict[str, Any]:
    """Flow 6: silver into Dataverse by bulk upserts."""
    before = _requests(ctx, "dataverse")["count"]
    ctx.world.hub.run_timer("dataverse_load")
    tables = (
        "accounts",
        "contoso_legacyorders",
        "contoso_legacyorderlines",
        "contoso_plantinventories",
    )
    return {
        "dataverseRequests": _requests(ctx, "dataverse")["count"] - before,
        "rows": {t: _records(ctx, "dataverse", t) for t in tables},
    }


def step_dataverse_export(ctx: DemoContext) -> dict[str, Any]:
    """Flow 7: Dataverse change tracking into the lake."""
    from shared.cli import table_counts

    ctx.world.hub.run_timer("dataverse_to_lake")
    silver = table_counts(["silver"])["silver"]
    return {"silver": {k: v for k, v in silver.items() if k.startswith("dataverse_")}}


def step_forecasts(ctx: DemoContext) -> dict[str, Any]:
    """Flow 1a forecasts: a batch from the reps, into bronze, then silver by the ingest job."""
    data = ctx.notes["data"]
    reps = data.reps[:5]
    goals = [g for g in data.goals if g.level == 1][:4]
    submissions = [
        {
            "salesRep": rep.email,
            "territory": goal.territory_code,
            "month": goal.month,
            "amount": str((goal.target / 7).quantize(Decimal("0.01"))),
            "probability": "0.5",
            "category": "Pipeline",
        }
        for rep in reps
        for goal in goals
    ]
    response = ctx.http.post(
        f"{ctx.hub}/api/forecasts",
        json={"submissions": submissions},
        headers=ctx.key_header,
        timeout=60,
    )
    if response.status_code != 202:
        raise RuntimeError(f"forecasts refused: {response.status_code} {response.text[:300]}")
    ctx.world.hub.run_timer("lake_ingest")
    from shared.cli import table_counts

    return {
        "submitted": len(submissions),
        "accepted": response.json().get("accepted"),
        "silverForecasts": table_counts(["silver"])["silver"].get("forecasts", 0),
    }


def step_archive(ctx: DemoContext) -> dict[str, Any]:
    """Flows 3 and 4: archived quotes and jobs as NDJSON, bad lines reported by number."""
    data = ctx.notes["data"]
    accounts = [a.number for a in list(data.accounts)[:20]]
    lines = [
        json.dumps(
            {
                "recordType": "quote",
                "quoteId": f"ARC-{i:05d}",
                "accountNumber": accounts[i % len(accounts)],
                "closedOn": f"2025-{(i % 12) + 1:02d}-15",
                "amount": f"{10000 + i * 37}.50",
                "currency": "USD",
                "status": ("won", "lost", "expired")[i % 3],
            }
        )
        for i in range(200)
    ]
    lines.insert(10, '{"recordType": "quote"}')
    lines.insert(50, "not json")
    response = ctx.http.post(
        f"{ctx.hub}/api/quotes/archive",
        data="\n".join(lines).encode(),
        headers={**ctx.key_header, "Content-Type": "application/x-ndjson"},
        timeout=120,
    )
    body = response.json()
    if response.status_code != 200:
        raise RuntimeError(f"archive import refused: {response.status_code} {body}")
    return {
        "received": body["received"],
        "accepted": body["accepted"],
        "rejected": body["rejected"],
        "badLines": [e["line"] for e in body["errors"]],
    }


def step_gold(ctx: DemoContext) -> dict[str, Any]:
    from shared.cli import table_counts

    ctx.world.hub.run_timer("gold_rebuild")
    return table_counts(["gold"])["gold"]


def step_pricing(ctx: DemoContext) -> dict[str, Any]:
    """Flow 1b: manager-approved prices changed since a time, page by page."""
    url = f"{ctx.hub}/api/pricing"
    params: dict[str, str] = {"since": "2000-01-01T00:00:00Z"}
    entries = pages = 0
    while True:
        response = ctx.http.get(url, params=params, headers=ctx.key_header, timeout=60)
        response.raise_for_status()
        page = response.json()
        pages += 1
        entries += len(page["items"])
        token = page.get("continuationToken")
        if not token:
            break
        params["continuationToken"] = token
    return {"entries": entries, "pages": pages}


def step_availability(ctx: DemoContext) -> dict[str, Any]:
    """Real-time stock from SAP; with SAP down, the last known value marked stale."""
    data = ctx.notes["data"]
    skus = [p.sku for p in data.products[:3]]
    url = f"{ctx.hub}/api/products/{{}}/availability"
    fresh = [ctx.http.get(url.format(s), headers=ctx.key_header, timeout=60).json() for s in skus]
    sap = ctx.world.endpoints()["sap"]
    ctx.http.put(
        f"{sap}/_sandbox/faults", json={"rate5xx": 1.0, "faultPhase": "before"}, timeout=30
    )
    try:
        from shared import wiring

        wiring.reset()  # a new worker: no in-process cache, only the last-known table
        stale = ctx.http.get(url.format(skus[0]), headers=ctx.key_header, timeout=60)
    finally:
        ctx.http.put(f"{sap}/_sandbox/faults", json={}, timeout=30)
    body = stale.json()
    if stale.status_code != 200 or body.get("stale") is not True:
        raise RuntimeError(f"expected a stale answer, got {stale.status_code} {body}")
    return {
        "skus": len(fresh),
        "plants": sum(len(a["plants"]) for a in fresh),
        "staleWhenSapDown": body["stale"],
    }


def step_urgent_orders(ctx: DemoContext) -> dict[str, Any]:
    """Flow 12: urgent updates to one SAP order, shuffled, with a duplicate and a malformed one."""
    import datetime as dt
    import json

    from shared import wiring

    data = ctx.notes["data"]
    order = next(iter(data.sap_seed()["A_SalesOrder"]))
    number = str(order["SalesOrder"])
    queue = ctx.world.settings()["URGENT_DATAVERSE_TO_SAP_QUEUE_NAME"]
    day = dt.date.today() + dt.timedelta(days=30)
    updates = [
        (
            f"demo-{number}-{v}",
            {
                "orderNumber": number,
                "sourceVersion": v,
                "changes": {
                    "requestedDeliveryDate": (day + dt.timedelta(days=v)).isoformat(),
                    "confirmed": True,
                },
            },
        )
        for v in (3, 1, 2)
    ]
    dispatcher = ctx.world.hub.dispatcher
    for message_id, body in [*updates, updates[0]]:
        dispatcher.send(queue, json.dumps(body), message_id=message_id, session_id=number)
    dispatcher.send(queue, "{not json", message_id=f"demo-{number}-bad", session_id=number)
    stats = dispatcher.run_until_idle()
    rejected = wiring.rejections().count("urgent-dataverse-to-sap")
    return {
        "order": number,
        "delivered": stats.completed,
        "duplicatesDropped": stats.duplicates,
        "rejected": rejected,
        "deadLettered": len(dispatcher.dead_letters(queue)),
    }


def step_dry_run(ctx: DemoContext) -> dict[str, Any]:
    """Initial sync dry run of every sync map (writes nothing to the systems)."""
    from shared import wiring
    from shared.services.dry_run import MAPS

    result: dict[str, Any] = {}
    for name in MAPS:
        report = wiring.dry_run(OUT).run(name)
        result[name] = {
            "create": len(report.create),
            "update": len(report.update),
            "couple": len(report.couple),
            "duplicates": sum(len(v) for v in report.duplicates.values()),
            "unmapped": len(report.unmapped),
            "orphans": sum(len(v) for v in report.orphans.values()),
        }
    return result


def step_reconcile(ctx: DemoContext) -> dict[str, Any]:
    """Reconciliation across the Quoting Tool, Dataverse and the lake; drift goes to gold."""
    from shared import wiring

    report = wiring.reconciler().run()
    drift: dict[str, int] = {}
    for item in report.drift:
        drift[item.entity] = drift.get(item.entity, 0) + 1
    explained = {p.entity: len(p.explained) for p in report.pairs if p.explained}
    if drift:
        raise RuntimeError(f"unexplained drift after the demo: {drift}")
    return {
        "pairs": len(report.pairs),
        "drift": drift,
        "explainedByRejections": explained,
        "skipped": report.skipped,
    }


def step_rejections(ctx: DemoContext) -> dict[str, Any]:
    from shared import wiring

    by_flow: dict[str, int] = {}
    for rejection in wiring.rejections().list():
        by_flow[rejection.flow] = by_flow.get(rejection.flow, 0) + 1
    return {"byFlow": by_flow}


def _writes(log: dict[str, Any]) -> int:
    return sum(1 for r in log["requests"] if r["method"] in ("PATCH", "POST", "DELETE"))


def _status(ctx: DemoContext, quote_id: str) -> dict[str, Any]:
    response = ctx.http.get(f"{ctx.hub}/api/quotes/{quote_id}", headers=ctx.key_header, timeout=30)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def step_sap_inbound(ctx: DemoContext) -> dict[str, Any]:
    """Flow 10: SAP orders, items, partners and assets into the lake and Dataverse."""
    from shared import wiring

    result = wiring.sap_inbound().run()
    return {
        "read": {"orders": result.orders_read, "assets": result.assets_read},
        "landed": {
            "salesorders": result.orders_landed,
            "salesorderdetails": result.items_landed,
            "contoso_partners": result.partners_landed,
            "contoso_customerassets": result.assets_landed,
        },
        "deferred": result.deferred,
        "rejected": result.rejected,
        "quotesOrdered": len(result.quotes_ordered),
    }


def step_sap_outbound(ctx: DemoContext) -> dict[str, Any]:
    """Flow 11: changes made in Sales back to SAP; the inbound batch's writes are not echoed."""
    from shared import wiring

    result = wiring.sap_outbound().run()
    return {
        "orderChanges": result.changes,
        "echoesSuppressed": result.echoes,
        "writtenToSap": len(result.written),
        "conflicts": result.conflicts,
        "priceChangesRefused": result.prices_refused,
    }


def step_dashboard(ctx: DemoContext) -> dict[str, Any]:
    """The operations dashboard: snapshot timer, then the page over HTTP into out/dashboard.html."""
    from shared import wiring
    from shared.services.dashboard import read_snapshot

    ctx.world.hub.run_timer("dashboard_snapshot")
    response = ctx.http.get(f"{ctx.hub}/api/dashboard", headers=ctx.key_header, timeout=60)
    if response.status_code != 200:
        raise RuntimeError(f"dashboard refused: {response.status_code} {response.text[:300]}")
    (OUT / "dashboard.html").write_text(response.text, encoding="utf-8")
    snapshot = read_snapshot(wiring.lake())
    if snapshot is None:
        raise RuntimeError("the dashboard_snapshot timer wrote no snapshot")
    ctx.notes["snapshot"] = snapshot
    return {
        "bytes": len(response.content),
        "healthRows": len(snapshot.health),
        "parityRows": len(snapshot.parity),
        "chartBars": {c.key: len(c.bars) for c in snapshot.charts},
    }


STEPS: list[tuple[str, Step]] = [
    ("sandbox", step_sandbox),
    ("health", step_health),
    ("generate-and-seed", step_generate),
    ("quotes-posted", step_quotes_posted),
    ("quotes-pushed-to-dataverse", step_quotes_pushed),
    ("quotes-qualified-callbacks", step_quotes_qualified),
    ("quotes-replayed-idempotent", step_quote_replay),
    ("mainframe-poll", step_mainframe_poll),
    ("mainframe-poll-unchanged", step_unchanged_poll),
    ("dataverse-load", step_dataverse_load),
    ("dataverse-export-to-lake", step_dataverse_export),
    ("forecasts", step_forecasts),
    ("quote-archive-import", step_archive),
    ("pricing-feed", step_pricing),
    ("availability", step_availability),
    ("sap-inbound", step_sap_inbound),
    ("sap-outbound", step_sap_outbound),
    ("urgent-orders", step_urgent_orders),
    # Gold last, as its timer would find it: after every job that writes silver (SAP orders
    # included, which the quote-to-order conversion reads).
    ("gold-rebuild", step_gold),
    ("dry-run", step_dry_run),
    ("reconcile", step_reconcile),
    ("rejections", step_rejections),
    ("dashboard", step_dashboard),
]


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"


@contextlib.contextmanager
def full_log(path: Path) -> Iterator[None]:
    """Every log record of the run, at DEBUG and from every logger, into ``path``.

    The file gets the worker's redacting filter the way the worker's own handlers get it
    (``shared.log.install()`` on the root handlers), so it shows what production would log; it is
    searched for every issued secret by ``tests/verify/test_secrets_in_logs.py``. The console keeps
    the level it had.
    """
    from shared import log as hub_log

    root = logging.getLogger()
    level = root.level
    consoles = [(h, h.level) for h in root.handlers]
    for console, console_level in consoles:
        console.setLevel(max(console_level, level))
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    hub_log.install()
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.setLevel(level)
        root.removeHandler(handler)
        handler.close()
        for console, console_level in consoles:
            console.setLevel(console_level)


def run(*, scale: int = 1000, seed: int = 7) -> int:
    """Run every step; writes out/demo-summary.json, out/report.html, out/demo.log, and the issued
    secrets to ``.sandbox/demo/issued-secrets.txt``. Returns the exit code."""
    OUT.mkdir(exist_ok=True)
    with full_log(OUT / "demo.log"):
        return _run(scale=scale, seed=seed)


def _run(*, scale: int, seed: int) -> int:
    state = ROOT_STATE / "demo"
    shutil.rmtree(state / "azurite", ignore_errors=True)
    summary: dict[str, Any] = {"seed": seed, "scale": scale, "steps": []}
    http = requests.Session()
    http.trust_env = False
    with World(state, persist=True) as world:
        http.verify = str(world.ca_bundle)
        world.start_app()
        ctx = DemoContext(world, seed, scale, http)
        try:
            failed = _run_steps(ctx, summary)
        finally:
            world.dump_issued_secrets()
    summary["status"] = "failed" if failed else "ok"
    (OUT / "demo-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    from shared.services.dashboard import render_report

    snapshot = ctx.notes.get("snapshot")
    report = render_report(summary, snapshot.charts if snapshot is not None else ())
    (OUT / "report.html").write_text(report, encoding="utf-8")
    sys.stdout.write(f"demo {summary['status']}: out/demo-summary.json, out/report.html\n")
    return 1 if failed else 0


def _run_steps(ctx: DemoContext, summary: dict[str, Any]) -> bool:
    """Run STEPS in order into ``summary`` until one fails; returns whether one failed."""
    failed = False
    for name, step in STEPS:
        started = time.perf_counter()
        entry: dict[str, Any] = {"step": name}
        try:
            entry["counts"] = step(ctx)
            entry["status"] = "ok"
        except Exception as exc:
            failed = True
            entry["status"] = "failed"
            entry["error"] = f"{type(exc).__name__}: {exc}"
            log.error("demo step %s failed:\n%s", name, traceback.format_exc())
        entry["seconds"] = round(time.perf_counter() - started, 3)
        summary["steps"].append(entry)
        sys.stdout.write(
            f"{entry['status']:>6}  {name:<28} {json.dumps(entry.get('counts', entry.get('error')))}\n"
        )
        sys.stdout.flush()
        if failed:
            break
    return failed
