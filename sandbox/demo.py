"""``make demo``: the whole flow end to end on the sandbox, as far as it exists.

Each step runs against the real app (dev HTTP adapter, local dispatcher, timers) and real peers,
and reports the counts it saw. The run ends by writing ``out/demo-summary.json`` with one entry per
step; it exits non-zero if any step failed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
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


def step_mainframe_poll(ctx: DemoContext) -> dict[str, Any]:
    from shared import wiring
    from shared.services.poll_mainframe import poll_mainframe

    settings = wiring.settings()
    result = poll_mainframe(
        wiring.mainframe(),
        wiring.watermarks(),
        wiring.lake(),
        overlap=dt.timedelta(seconds=settings.mainframe_overlap_seconds),
    )
    return {
        "read": result.read,
        "requests": result.requests,
        "entities": {
            name: {
                "bronze": e.bronze_records,
                "silverInserted": e.silver_inserted,
                "silverUpdated": e.silver_updated,
                "quarantined": e.quarantined,
            }
            for name, e in result.entities.items()
        },
    }


def step_gold(ctx: DemoContext) -> dict[str, Any]:
    from shared import wiring
    from shared.lake.gold import rebuild_gold

    result = rebuild_gold(wiring.lake())
    return {"rows": result.rows, "written": len(result.written)}


def _writes(log: dict[str, Any]) -> int:
    return sum(1 for r in log["requests"] if r["method"] in ("PATCH", "POST", "DELETE"))


def _status(ctx: DemoContext, quote_id: str) -> dict[str, Any]:
    response = ctx.http.get(f"{ctx.hub}/api/quotes/{quote_id}", headers=ctx.key_header, timeout=30)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


STEPS: list[tuple[str, Step]] = [
    ("sandbox", step_sandbox),
    ("health", step_health),
    ("generate-and-seed", step_generate),
    ("quotes-posted", step_quotes_posted),
    ("quotes-pushed-to-dataverse", step_quotes_pushed),
    ("quotes-qualified-callbacks", step_quotes_qualified),
    ("quotes-replayed-idempotent", step_quote_replay),
    ("mainframe-poll", step_mainframe_poll),
    ("gold-rebuild", step_gold),
]


def run(*, scale: int = 1000, seed: int = 7) -> int:
    state = ROOT_STATE / "demo"
    shutil.rmtree(state / "azurite", ignore_errors=True)
    OUT.mkdir(exist_ok=True)
    summary: dict[str, Any] = {"seed": seed, "scale": scale, "steps": []}
    failed = False
    http = requests.Session()
    http.trust_env = False
    with World(state, persist=True) as world:
        http.verify = str(world.ca_bundle)
        world.start_app()
        ctx = DemoContext(world, seed, scale, http)
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
    summary["status"] = "failed" if failed else "ok"
    (OUT / "demo-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    sys.stdout.write(f"demo {summary['status']}: out/demo-summary.json\n")
    return 1 if failed else 0
