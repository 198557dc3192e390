"""``make demo``: the whole flow end to end on the sandbox, as far as it exists.

Each step runs against the real app (dev HTTP adapter, local dispatcher, timers) and real peers,
and reports the counts it saw. The run ends by writing ``out/demo-summary.json`` with one entry per
step; it exits non-zero if any step failed.
"""

from __future__ import annotations

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


STEPS: list[tuple[str, Step]] = [
    ("sandbox", step_sandbox),
    ("health", step_health),
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
