"""Run the hub's jobs as a pipeline in child processes, SIGKILL them at planned points, check.

``run_pipeline(world, config, plan)`` seeds a fresh sandbox world from the generator and runs
the stages in order, each in a child process (``tests.crash.runner``) with the world's settings:

    mainframe_poll → dataverse_load → quote_push → lake_ingest → sap_inbound → sap_outbound
    → dataverse_to_lake

For every kill point of a stage (``tests.crash.catalogue``) one attempt of the stage is started
and dies by SIGKILL at that point — a peer holds the chosen request and the harness kills the
child, or the child's hook kills itself. Then every job's watermarks and delta tokens are checked
against committed data (``tests.crash.checks``), and the next attempt starts. A final attempt runs
uninterrupted (the re-run). After the last stage the ``gold_rebuild`` timer runs once, so gold is
part of the end state. With an empty plan the same pipeline is the clean reference run; the two
worlds' end states are compared by ``tests.crash.snapshot``.

The quote push is driven like the Service Bus trigger: the accepted quotes' messages are
delivered one by one; a message counts as completed only after the function returned, so a
killed delivery is delivered again (``deliveryCount`` + 1), as the broker does when a lock is lost.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from sandbox import azurite as azurite_mod
from sandbox.datagen import ContosoData, generate, sap_order_for_quote, to_jsonable
from sandbox.world import World
from tests.crash import checks, snapshot
from tests.crash.catalogue import Context, KillPoint
from tests.crash.hooks import ENV as HOOK_ENV
from tests.crash.hooks import marker_of
from tests.crash.reader import WorldReader, wipe_storage

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
STAGES = (
    "mainframe_poll",
    "dataverse_load",
    "quote_push",
    "lake_ingest",
    "sap_inbound",
    "sap_outbound",
    "dataverse_to_lake",
)
HOLD_TIMEOUT_SECONDS = 120.0
CHILD_TIMEOUT_SECONDS = 1800.0
# A request a peer holds must not time out in the child before the harness kills it (the world's
# 5 s suits fault runs; here the wait is the harness noticing the hold, which a busy machine
# can stretch).
CHILD_HTTP_TIMEOUT = "60"


class KillPointMissed(AssertionError):
    """A planned kill point was never reached: the child finished (or failed) instead."""


@dataclass(frozen=True)
class Config:
    """One pipeline: the generated world and which stages run."""

    seed: int
    scale: int
    stages: Sequence[str] = STAGES
    quotes: int = 40
    """Quotes posted to the intake (the first ones the generator makes)."""
    outbound_edits: int = 6
    """Sales orders a sales user confirms and re-dates in Dataverse before flow 11."""
    quote_orders: int = 3
    """SAP orders placed for quotes the hub pushed, before flow 10 (when the push runs)."""
    gold: bool = True
    """Rebuild gold after the stages, so gold is compared too."""

    @property
    def orders_for_quotes(self) -> int:
        """How many SAP orders reference hub quotes (none without the quote push)."""
        return self.quote_orders if "quote_push" in self.stages else 0


@dataclass
class ChildOutcome:
    """How one child process ended."""

    args: list[str]
    returncode: int
    seconds: float
    killed: bool
    reached: dict[str, Any] | None = None
    stderr_tail: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready, for the report."""
        return {
            "args": self.args,
            "returncode": self.returncode,
            "killedBySigkill": self.killed,
            "reached": self.reached,
            "seconds": round(self.seconds, 2),
        }


class ForkServer:
    """``tests.crash.runner serve``: forks a worker per attempt from a process that imported the
    app once. Workers are real processes of their own; the harness SIGKILLs them by pid."""

    def __init__(self, cwd: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k != HOOK_ENV}
        env["PYTHONPATH"] = str(ROOT)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.crash.runner", "serve"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, name="crash-fork-server", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def _next(self, timeout: float | None) -> dict[str, Any]:
        line = self.lines.get(timeout=timeout)
        if line is None:
            raise RuntimeError(f"the fork server ended ({self.process.wait()})")
        return line

    def start(self, args: Sequence[str], env: dict[str, str], base: Path) -> int:
        """Fork a worker running ``args``; its pid."""
        assert self.process.stdin is not None
        request = {"args": list(args), "env": env, "stdout": f"{base}.out", "stderr": f"{base}.err"}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return int(self._next(60)["pid"])

    def exited(self, timeout: float | None) -> int | None:
        """The worker's exit status (``-9`` for SIGKILL), or None if it is still running."""
        try:
            return int(self._next(timeout)["exit"])
        except queue.Empty:
            return None

    def close(self) -> None:
        """Stop the server (it ends when its stdin closes)."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class CrashWorld:
    """A sandbox world on its own Azurite account, wiped when a fresh world is started."""

    def __init__(self, state_dir: Path, azurite: azurite_mod.Azurite) -> None:
        self.state_dir = state_dir
        self.azurite = azurite
        self.world: World | None = None
        self.work = state_dir
        self.children = 0
        self._http: requests.Session | None = None
        self.forks = ForkServer(state_dir)

    def fresh(self, name: str) -> World:
        """Stop the current world, wipe the account's storage and start new peers."""
        self.stop()
        wipe_storage(self.azurite.blob_url, self.azurite.table_url)
        world = World(self.state_dir / name, shared_azurite=self.azurite)
        world.start()
        self.world = world
        self._http = requests.Session()
        self._http.trust_env = False
        self._http.verify = str(world.ca_bundle)
        self.work = self.state_dir / name / "children"
        self.work.mkdir(parents=True, exist_ok=True)
        return world

    def close(self) -> None:
        """Stop the peers and the fork server."""
        self.stop()
        self.forks.close()

    def stop(self) -> None:
        """Stop the peers (the Azurite account stays for the next world)."""
        if self._http is not None:
            self._http.close()
            self._http = None
        if self.world is not None:
            self.world.stop()
            self.world = None

    @property
    def http(self) -> requests.Session:
        """A session trusting the current world's CA (``trust_env`` off: see docs/sandbox.md)."""
        assert self._http is not None, "no world started"
        return self._http

    def env(self) -> dict[str, str]:
        """The child's environment: this world's app settings, nothing of the test session's."""
        assert self.world is not None
        env = {k: v for k, v in os.environ.items() if k != HOOK_ENV}
        env.update(self.world.settings())
        env["HTTP_TIMEOUT_SECONDS"] = CHILD_HTTP_TIMEOUT
        env["PYTHONPATH"] = str(ROOT)
        return env

    def run_child(self, args: Sequence[str], point: KillPoint | None = None) -> ChildOutcome:
        """Run ``tests.crash.runner`` with ``args``; kill it at ``point`` if given."""
        assert self.world is not None
        self.children += 1
        work = self.work
        base = work / f"{self.children:03d}"
        env = self.env()
        marker = Path(f"{base}.reached.json")
        hold_url = None
        http = self.http
        if point is not None and point.hook is not None:
            env[HOOK_ENV] = dataclasses.replace(point.hook, marker=str(marker)).to_env()
        if point is not None and point.hold is not None:
            hold_url = f"{self.world.endpoints()[point.hold.peer]}/_sandbox/hold"
            response = http.put(hold_url, json=point.hold.body(HOLD_TIMEOUT_SECONDS), timeout=30)
            response.raise_for_status()
        started = time.perf_counter()
        pid = self.forks.start(args, env, base)
        reached = None
        try:
            if hold_url is not None:
                reached = self._kill_when_held(pid, http, hold_url)
            returncode = self.forks.exited(CHILD_TIMEOUT_SECONDS)
            if returncode is None:
                raise TimeoutError(f"{args} still running after {CHILD_TIMEOUT_SECONDS} s")
        except BaseException:
            if self.forks.lines.empty():  # no exit reported: the worker is still ours to end
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            raise
        finally:
            if hold_url is not None:
                http.delete(hold_url, timeout=30)
        seconds = time.perf_counter() - started
        if point is not None and point.hook is not None:
            reached = marker_of(marker)
        stderr = Path(f"{base}.err").read_text(encoding="utf-8", errors="replace")
        killed = returncode == -signal.SIGKILL and reached is not None
        return ChildOutcome(list(args), returncode, seconds, killed, reached, stderr[-3000:])

    def _kill_when_held(self, pid: int, http: requests.Session, url: str) -> dict[str, Any] | None:
        """SIGKILL the worker as soon as the peer holds the chosen request; None if it ended
        first (its exit status is then still queued for ``exited``)."""
        while True:
            state = http.get(url, params={"wait": "0.5"}, timeout=30).json()
            if state.get("held"):
                os.kill(pid, signal.SIGKILL)
                held: dict[str, Any] = state["request"]
                return held
            if not self.forks.lines.empty():
                return None


@dataclass
class Run:
    """The state of one pipeline run: the world, the generated data and what the stages did."""

    world: CrashWorld
    config: Config
    data: ContosoData
    reader: WorldReader
    quotes: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)
    edits: list[checks.SalesEdit] = field(default_factory=list)
    kills: list[dict[str, Any]] = field(default_factory=list)
    reruns: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)

    @property
    def done_path(self) -> Path:
        """Completed quote messages, one id a line (written by the child)."""
        return self.world.work / "completed-messages.txt"

    def completed(self) -> set[str]:
        """Ids of quote messages completed so far."""
        if not self.done_path.exists():
            return set()
        return set(self.done_path.read_text(encoding="utf-8").split())

    def check(self) -> list[checks.MarkCheck]:
        """Every job's watermarks and delta tokens against committed data."""
        return checks.check_all(
            self.reader, edits=self.edits, quotes=self.quotes, completed=self.completed()
        )


# ---- the generated world ------------------------------------------------------------------------


def seed_world(run: Run) -> dict[str, int]:
    """Seed every peer from the generator; the quotes to post are kept for the intake."""
    counts: dict[str, int] = {}
    http = run.world.http
    projections = {
        "dataverse": run.data.dataverse_seed(),
        "sap": run.data.sap_seed(),
        "mainframe": run.data.mainframe_seed(),
    }
    for peer, tables in projections.items():
        url = f"{run.reader.peer(peer)}/_sandbox/seed"
        for name, table in tables.items():
            rows = [to_jsonable(r) for r in table]
            for start in range(0, len(rows), 5000):
                response = http.post(url, json={name: rows[start : start + 5000]}, timeout=300)
                if response.status_code != 200:
                    raise RuntimeError(f"seeding {peer}.{name}: {response.text[:300]}")
            counts[f"{peer}.{name}"] = len(rows)
    quotes = [to_jsonable(q) for q in run.data.quoting_tool_quotes()][: run.config.quotes]
    run.quotes = {str(q["quoteId"]): q for q in quotes}
    return counts


def accepted_quotes(data: ContosoData, config: Config) -> list[str]:
    """Ids of the posted quotes the intake accepts, in order (it refuses the planted
    out-of-range probabilities with 422; unknown accounts and SKUs are refused by the push)."""
    refused = data.planted.get("quotingtool.quotes", "probability_out_of_range")
    return [
        str(q["quoteId"])
        for q in list(data.quoting_tool_quotes())[: config.quotes]
        if q["quoteId"] not in refused
    ]


def pushable_quotes(data: ContosoData, config: Config) -> list[str]:
    """Accepted quotes with no planted problem: their push writes them to Dataverse."""
    planted = data.planted.all_keys("quotingtool.quotes")
    return [q for q in accepted_quotes(data, config) if q not in planted]


def context(data: ContosoData, config: Config) -> Context:
    """What the kill-point catalogue needs to know of a generated world."""
    mainframe = {name: len(list(table)) for name, table in data.mainframe_seed().items()}
    eligible = pushable_quotes(data, config)
    accepted = accepted_quotes(data, config)
    return Context(
        mainframe=mainframe,
        silver_rows={
            "customers": mainframe.get("customers", 0),
            "legacy_orders": mainframe.get("orders", 0),
            "legacy_order_lines": mainframe.get("orderlines", 0),
            "plant_inventory": mainframe.get("inventory", 0),
        },
        sap_orders=len(list(data.sap_seed()["A_SalesOrder"])),
        messages=tuple(accepted.index(q) for q in eligible),
        outbound_edits=config.outbound_edits,
        quote_orders=min(config.orders_for_quotes, len(eligible)),
    )


# ---- stages -------------------------------------------------------------------------------------


TIMERS = {
    "mainframe_poll": "mainframe_poll",
    "dataverse_load": "dataverse_load",
    "lake_ingest": "lake_ingest",
    "sap_inbound": "sap_inbound",
    "sap_outbound": "sap_outbound",
    "dataverse_to_lake": "dataverse_to_lake",
}


def _require(outcome: ChildOutcome, what: str) -> None:
    if outcome.returncode != 0:
        raise AssertionError(f"{what} failed ({outcome.returncode}):\n{outcome.stderr_tail}")


def prepare(run: Run, stage: str) -> None:
    """What happens outside the hub before a stage: quotes posted, sales users' edits."""
    if stage == "quote_push":
        source = run.world.work / "quotes.json"
        target = run.world.work / "messages.json"
        source.write_text(json.dumps(list(run.quotes.values())), encoding="utf-8")
        _require(run.world.run_child(["intake", str(source), str(target)]), "quote intake")
        intake = json.loads(target.read_text(encoding="utf-8"))
        run.messages = [
            {**m, "deliveryCount": 0, "sequenceNumber": i + 1}
            for i, m in enumerate(intake["messages"])
        ]
        run.refused = intake["refused"]
        expected = accepted_quotes(run.data, run.config)
        got = [m["messageId"].rsplit("-r", 1)[0] for m in run.messages]
        if got != expected:
            # The plan numbers messages by the quotes the generator says intake accepts.
            raise AssertionError(f"intake accepted {got}, expected {expected}")
    elif stage == "sap_inbound":
        orders_for_quotes(run)
    elif stage == "sap_outbound":
        run.edits = sales_edits(run)


def orders_for_quotes(run: Run) -> None:
    """Customers order some quotes the hub pushed: SAP orders whose ``PurchaseOrderByCustomer``
    is the quote id (flow 10 couples them and marks the quotes ordered)."""
    chosen = pushable_quotes(run.data, run.config)[: run.config.orders_for_quotes]
    orders = [
        sap_order_for_quote(
            run.quotes[quote_id],
            f"4500{index + 1:04d}",
            order_date="2026-11-20",
            delivery_date="2027-02-15",
            changed_at=f"2026-11-20T10:00:{index:02d}Z",
        )
        for index, quote_id in enumerate(chosen)
    ]
    if orders:
        url = f"{run.reader.peer('sap')}/_sandbox/seed"
        response = run.world.http.post(url, json={"A_SalesOrder": orders}, timeout=60)
        if response.status_code != 200:
            raise RuntimeError(f"seeding orders for quotes: {response.text[:300]}")


def sales_edits(run: Run) -> list[checks.SalesEdit]:
    """A sales user confirms and re-dates some orders in Dataverse (chosen by the seed)."""
    orders = sorted(
        str(r["contoso_sapsalesorder"]) for r in run.reader.records("dataverse", "salesorders")
    )
    chosen = sorted(
        random.Random(run.config.seed).sample(orders, min(run.config.outbound_edits, len(orders)))
    )
    world = run.world.world
    assert world is not None
    dataverse = world.endpoints()["dataverse"]
    token = world.issuer.issue(world.test_client[0], dataverse)
    edits = []
    for index, number in enumerate(chosen):
        edit = checks.SalesEdit(number, f"2027-03-{index + 1:02d}", True)
        response = run.world.http.patch(
            f"{dataverse}/api/data/v9.2/salesorders(contoso_sapsalesorder='{number}')",
            json={"contoso_confirmed": True, "requestdeliveryby": edit.delivery_date},
            headers={"Authorization": f"Bearer {token}", "If-Match": "*"},
            timeout=60,
        )
        if response.status_code != 204:
            raise RuntimeError(f"sales edit of {number}: {response.status_code} {response.text}")
        edits.append(edit)
    return edits


def _deliver(run: Run, messages: list[dict[str, Any]], point: KillPoint | None) -> ChildOutcome:
    """One child delivering ``messages`` in order; delivery counts follow what was started."""
    path = run.world.work / f"deliver-{run.world.children + 1:03d}.json"
    batch = [{**m, "deliveryCount": m["deliveryCount"] + 1} for m in messages]
    path.write_text(json.dumps(batch), encoding="utf-8")
    outcome = run.world.run_child(["push", str(path), str(run.done_path)], point)
    done = run.completed()
    for message in messages:
        message["deliveryCount"] += 1
        if message["messageId"] not in done:
            break  # in flight when the child died; the ones after it were never delivered
    return outcome


def attempt(run: Run, stage: str, point: KillPoint | None) -> ChildOutcome:
    """One attempt of a stage, killed at ``point`` (uninterrupted when None)."""
    if stage != "quote_push":
        return run.world.run_child(["timer", TIMERS[stage]], point)
    done = run.completed()
    pending = [m for m in run.messages if m["messageId"] not in done]
    if point is None:
        return _deliver(run, pending, None)
    assert point.message is not None
    target = run.messages[point.message]
    if target["messageId"] in done:
        raise KillPointMissed(f"message {point.message} was completed before its kill point")
    earlier = [m for m in pending if run.messages.index(m) < point.message]
    if earlier:
        _require(_deliver(run, earlier, None), "quote push")
    return _deliver(run, [target], point)


def committed(run: Run) -> dict[str, Any]:
    """What exists after a kill: silver versions, bronze pages, watermarks."""
    return {
        "silverVersions": {t: run.reader.silver_version(t) for t in run.reader.silver_tables()},
        "bronzePages": run.reader.bronze_blobs(),
        "watermarks": {f"{m.job}/{m.entity}": m.value for m in run.reader.watermarks()},
    }


def start_run(world: CrashWorld, config: Config, name: str) -> Run:
    """A fresh world (new peers, wiped storage) seeded from the generator."""
    fresh = world.fresh(name)
    run = Run(world, config, generate(config.seed, config.scale), WorldReader(fresh, world.http))
    seed_world(run)
    return run


def execute(run: Run, plan: dict[str, list[KillPoint]]) -> None:
    """Run the stages, killing each at its planned points, checking after every kill.

    Progress is kept on ``run`` (``kills``, ``reruns``) as it happens, so a caller can report
    how far a failing pipeline got.
    """
    started = time.perf_counter()
    for stage in run.config.stages:
        prepare(run, stage)
        for point in plan.get(stage, []):
            outcome = attempt(run, stage, point)
            if not outcome.killed:
                raise KillPointMissed(
                    f"{stage}: {point.where} was not reached (exit {outcome.returncode})\n"
                    f"{outcome.stderr_tail}"
                )
            results = run.check()
            run.kills.append(
                {
                    **point.describe(),
                    "child": outcome.to_json(),
                    "committed": committed(run),
                    "watermarks": [c.to_json() for c in results],
                    "violations": sum(c.violation_count for c in results),
                }
            )
        outcome = attempt(run, stage, None)
        _require(outcome, f"{stage} re-run")
        run.reruns.append(
            {"job": stage, "afterKills": len(plan.get(stage, [])), **outcome.to_json()}
        )
    if run.config.gold:
        # Gold as the gold_rebuild timer leaves it, from the converged silver (not killed).
        _require(run.world.run_child(["timer", "gold_rebuild"]), "gold rebuild")
    final = run.check()
    run.final = {
        "watermarks": [c.to_json() for c in final],
        "violations": sum(c.violation_count for c in final),
        "seconds": round(time.perf_counter() - started, 1),
    }


def run_pipeline(
    world: CrashWorld, config: Config, plan: dict[str, list[KillPoint]], name: str
) -> tuple[Run, snapshot.Snapshot]:
    """Seed a fresh world, run the pipeline killing at ``plan``; the run and its end state."""
    run = start_run(world, config, name)
    execute(run, plan)
    return run, snapshot.take(run.reader)


@contextlib.contextmanager
def crash_world(state_dir: Path) -> Iterator[CrashWorld]:
    """A ``CrashWorld`` on its own Azurite (never the test session's, which it wipes)."""
    azurite = azurite_mod.start(state_dir / "azurite")
    world = CrashWorld(state_dir, azurite)
    try:
        yield world
    finally:
        world.close()
        azurite.stop()


def report(
    config: Config,
    planned: dict[str, list[KillPoint]],
    reference: Run | None,
    crashed: Run | None,
    comparison: snapshot.Comparison | None,
    elapsed: float,
    error: str | None = None,
) -> dict[str, Any]:
    """The figures of one crash-safety run (``out/verify-crash.json``)."""
    kills = crashed.kills if crashed is not None else []
    return {
        "seed": config.seed,
        "scale": config.scale,
        "stages": list(config.stages),
        "quotes": config.quotes,
        "planned": sum(len(p) for p in planned.values()),
        "killPoints": kills,
        "killedBySigkill": sum(1 for k in kills if k["child"]["killedBySigkill"]),
        "violations": sum(k["violations"] for k in kills)
        + (crashed.final.get("violations", 0) if crashed is not None else 0),
        "reruns": crashed.reruns if crashed is not None else [],
        "finalChecks": crashed.final if crashed is not None else {},
        "reference": reference.final if reference is not None else {},
        "finalState": comparison.to_json() if comparison is not None else None,
        "lost": comparison.lost if comparison is not None else None,
        "duplicated": comparison.duplicated if comparison is not None else None,
        "elapsedSeconds": round(elapsed, 1),
        "error": error,
    }
