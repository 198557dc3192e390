"""The kill-point catalogue: where a hub job can be SIGKILLed, and the seeded choice among them.

A kill point is reached in one of two ways, both ending in a real SIGKILL of the child process:

- a **hold** (``HoldRule``): a sandbox peer holds the ``nth`` matching request in flight
  (``PUT /_sandbox/hold``) and the harness kills the child while it waits for the answer —
  *mid-page* (the peer is serving page n of a listing) or *mid-bulk-upsert* (``before``: the
  write never ran; ``after``: the peer applied it and the answer is lost with the process);
- a **hook** (``tests.crash.hooks``): the child kills itself at the ``nth`` matching call of a
  named hub function — between the bronze write and the silver commit (before
  ``merge_silver``), after the silver commit and before the watermark moves, after a watermark
  moved and before the next entity, after Dataverse took a quote and before the hub noted it.

Points of one stage are executed in order of ``position`` (the job's own progress order): each
kill is followed by the checks and by the next attempt of the job, which is killed at the next
point, until a last attempt runs uninterrupted. A job keeps what it durably finished (a moved
watermark), so a point is only planned after another one when the job's re-run still passes it:
``finishes`` marks points after which their ``unit`` (entity, mapping, table, message) is done.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tests.crash.hooks import HookSpec

MERGE_SILVER = "shared.lake.silver:merge_silver"
ADVANCE = "shared.adapters.state:WatermarkStore.advance"
QUOTE_SAVE = "shared.adapters.quote_store:QuoteStore.save"
COUPLING_LINK = "shared.adapters.records:CouplingStore.link"
API = r"^/api/data/v9\.2/"
SALES_ORDER_SRV = r"^/sap/opu/odata/sap/API_SALES_ORDER_SRV/"
EQUIPMENT_SRV = r"^/sap/opu/odata/sap/API_EQUIPMENT/"

MAX_PER_STAGE = 3
"""More kills per job would only repeat points: its re-runs pass the same places."""
MAINFRAME_PAGE = 1000
"""Records per mainframe listing page (``poll_mainframe.DEFAULT_PAGE_SIZE``)."""
SAP_PAGE = 500
"""Records per SAP change page (``SapClient`` default page size)."""
BULK_CHUNK = 1000
"""Rows per UpsertMultiple / $batch request (``DataverseClient`` defaults)."""
LOAD_BATCH = 5000
"""Silver rows per load batch (``load_dataverse.DEFAULT_BATCH_ROWS``): one cursor advance each."""


@dataclass(frozen=True)
class HoldRule:
    """Hold the ``nth`` request to ``peer`` matching ``method`` and the ``path`` regex."""

    peer: str
    method: str
    path: str
    nth: int = 1
    phase: str = "before"

    def body(self, timeout_seconds: float) -> dict[str, Any]:
        """The ``PUT /_sandbox/hold`` body."""
        return {
            "method": self.method,
            "path": self.path,
            "nth": self.nth,
            "phase": self.phase,
            "timeoutSeconds": timeout_seconds,
        }


@dataclass(frozen=True)
class KillPoint:
    """One place to SIGKILL a stage's child process (see the module docstring)."""

    stage: str
    kind: str
    where: str
    unit: int
    position: tuple[int, ...]
    hold: HoldRule | None = None
    hook: HookSpec | None = None
    finishes: bool = False
    message: int | None = None

    def __post_init__(self) -> None:
        if (self.hold is None) == (self.hook is None):
            raise ValueError("a kill point is either a hold or a hook")

    @property
    def mechanism(self) -> str:
        """``peer-hold`` (killed by the harness) or ``self-hook`` (killed by itself)."""
        return "peer-hold" if self.hold is not None else "self-hook"

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for the report."""
        out: dict[str, Any] = {
            "job": self.stage,
            "kind": self.kind,
            "where": self.where,
            "mechanism": self.mechanism,
        }
        if self.hold is not None:
            out["hold"] = asdict(self.hold)
        if self.hook is not None:
            out["hook"] = {
                "target": self.hook.target,
                "at": self.hook.at,
                "nth": self.hook.nth,
                "match": dict(self.hook.match),
            }
        if self.message is not None:
            out["message"] = self.message
        return out


@dataclass(frozen=True)
class Context:
    """What the catalogue needs to know of the generated world to plan reachable points."""

    mainframe: Mapping[str, int]
    """Records per mainframe entity."""
    silver_rows: Mapping[str, int]
    """Rows per flow-6 mapping the load sends (an upper bound is fine, a lower one is safer)."""
    sap_orders: int
    messages: Sequence[int] = field(default_factory=tuple)
    """Indices of quote messages whose push writes to Dataverse (no planted problem)."""
    outbound_edits: int = 0
    quote_orders: int = 0
    """SAP orders placed for quotes that went through the hub (flow 10 couples them)."""


def _hook(target: str, at: str, **match: str) -> HookSpec:
    """The first call of ``target`` whose arguments match (a unit is one call per attempt)."""
    return HookSpec(target=target, at=at, nth=1, match=match)


def mainframe_points(ctx: Context) -> list[KillPoint]:
    """Flow 5: per entity, mid-page, bronze written but silver not, silver but no watermark."""
    from shared.lake.specs import MAINFRAME_SPECS
    from shared.services.poll_mainframe import ENTITIES, JOB

    points: list[KillPoint] = []
    for unit, entity in enumerate(ENTITIES):
        table = MAINFRAME_SPECS[entity].table
        pages = math.ceil(ctx.mainframe.get(entity, 0) / MAINFRAME_PAGE)
        for page in range(1, min(pages, 3) + 1):
            for phase in ("before", "after"):
                points.append(
                    KillPoint(
                        "mainframe_poll",
                        "mid-page",
                        f"the mainframe is serving {entity} page {page} ({phase} it is built)",
                        unit,
                        (unit, 0, page),
                        hold=HoldRule("mainframe", "GET", rf"^/los/v1/{entity}(\?|$)", page, phase),
                    )
                )
        if not pages:
            continue
        points += [
            KillPoint(
                "mainframe_poll",
                "bronze-written-silver-not-committed",
                f"{entity}: every bronze page written, silver/{table} MERGE not started",
                unit,
                (unit, 1),
                hook=_hook(MERGE_SILVER, "before", **{"spec.table": table}),
            ),
            KillPoint(
                "mainframe_poll",
                "silver-committed-watermark-not-advanced",
                f"{entity}: silver/{table} committed, watermark not advanced",
                unit,
                (unit, 2),
                hook=_hook(MERGE_SILVER, "after", **{"spec.table": table}),
            ),
            KillPoint(
                "mainframe_poll",
                "watermark-advanced-next-entity-not-started",
                f"{entity}: watermark advanced, the next entity not polled",
                unit,
                (unit, 3),
                hook=_hook(ADVANCE, "after", job=JOB, entity=entity),
                finishes=True,
            ),
        ]
    return points


def load_points(ctx: Context) -> list[KillPoint]:
    """Flow 6: mid-bulk-upsert (before/after the peer applied it), upserted but no cursor."""
    from shared.mappings import MAPPINGS
    from shared.services.load_dataverse import JOB

    points: list[KillPoint] = []
    for unit, mapping in enumerate(MAPPINGS):
        rows = ctx.silver_rows.get(mapping.name, 0)
        if not rows:
            continue
        # Only requests of the first batch: a kill there leaves the cursor where it was, so a
        # re-run sends the same requests again and a later point of this mapping is reached too.
        chunks = math.ceil(min(rows, LOAD_BATCH) / BULK_CHUNK)
        bulk = f"{API}{mapping.entity_set}/Microsoft\\.Dynamics\\.CRM\\.UpsertMultiple"
        # accounts has no UpsertMultiple (docs/dataverse-schema.md): the client uses $batch.
        path = rf"{API}\$batch" if mapping.entity_set == "accounts" else bulk
        for nth in range(1, min(chunks, 2) + 1):
            for phase in ("before", "after"):
                lost = "applied, its answer lost" if phase == "after" else "not applied"
                points.append(
                    KillPoint(
                        "dataverse_load",
                        "mid-bulk-upsert",
                        f"{mapping.entity_set}: bulk upsert request {nth} in flight ({lost})",
                        unit,
                        (unit, 0, nth),
                        hold=HoldRule("dataverse", "POST", path, nth, phase),
                    )
                )
        points += [
            KillPoint(
                "dataverse_load",
                "upserted-cursor-not-advanced",
                f"{mapping.name}: first batch landed in Dataverse, its cursor not advanced",
                unit,
                (unit, 1),
                hook=_hook(ADVANCE, "before", job=JOB, entity=mapping.name),
            ),
            KillPoint(
                "dataverse_load",
                "cursor-advanced-next-batch-not-sent",
                f"{mapping.name}: cursor advanced after the first batch, nothing more sent",
                unit,
                (unit, 2),
                hook=_hook(ADVANCE, "after", job=JOB, entity=mapping.name),
                finishes=True,
            ),
        ]
    return points


def quote_points(ctx: Context) -> list[KillPoint]:
    """Flow 1a: the push of one message killed mid-write; Service Bus redelivers it."""
    points: list[KillPoint] = []
    for message in ctx.messages:
        quote = rf"{API}quotes\("
        lines = f"{API}quotedetails/Microsoft\\.Dynamics\\.CRM\\.UpsertMultiple"
        points += [
            KillPoint(
                "quote_push",
                "mid-upsert",
                f"message {message}: the quote upsert in flight (not applied)",
                message,
                (message, 0),
                hold=HoldRule("dataverse", "PATCH", quote, 1, "before"),
                message=message,
            ),
            KillPoint(
                "quote_push",
                "mid-bulk-upsert",
                f"message {message}: quote lines upserted by Dataverse, the answer lost",
                message,
                (message, 1),
                hold=HoldRule("dataverse", "POST", lines, 1, "after"),
                message=message,
            ),
            KillPoint(
                "quote_push",
                "written-not-marked-pushed",
                f"message {message}: quote and lines in Dataverse, pushed revision not saved",
                message,
                (message, 2),
                hook=_hook(QUOTE_SAVE, "before"),
                message=message,
            ),
            KillPoint(
                "quote_push",
                "marked-pushed-message-not-completed",
                f"message {message}: pushed revision saved, message not completed",
                message,
                (message, 3),
                hook=_hook(QUOTE_SAVE, "after"),
                message=message,
            ),
        ]
    return points


def ingest_points(ctx: Context) -> list[KillPoint]:
    """The ``lake_ingest`` job: the quotes intake wrote to bronze, into silver (flow 1a's lake)."""
    from shared.lake.specs import QUOTING_TOOL_SPECS
    from shared.services.forecasts import LAKE_JOB

    entities = list(QUOTING_TOOL_SPECS)
    if not ctx.messages or "quotes" not in entities:
        return []
    unit = entities.index("quotes")
    spec = QUOTING_TOOL_SPECS["quotes"]
    key = f"{spec.source}.{spec.entity}"
    first = QUOTING_TOOL_SPECS[entities[0]]
    points = [
        KillPoint(
            "lake_ingest",
            "bronze-read-silver-not-committed",
            f"quote pages read from bronze, silver/{spec.table} MERGE not started",
            unit,
            (unit, 1),
            hook=_hook(MERGE_SILVER, "before", **{"spec.table": spec.table}),
        ),
        KillPoint(
            "lake_ingest",
            "silver-committed-watermark-not-advanced",
            f"silver/{spec.table} committed, the ingest watermark not advanced",
            unit,
            (unit, 2),
            hook=_hook(MERGE_SILVER, "after", **{"spec.table": spec.table}),
        ),
        KillPoint(
            "lake_ingest",
            "silver-committed-watermark-not-advanced",
            "quotes committed and the run logged, the ingest watermark not advanced",
            unit,
            (unit, 3),
            hook=_hook(ADVANCE, "before", job=LAKE_JOB, entity=key),
        ),
    ]
    if unit > 0:
        points.append(
            KillPoint(
                "lake_ingest",
                "watermark-advanced-next-entity-not-started",
                f"{first.entity}: (idle) watermark advanced, quotes not ingested",
                0,
                (0, 3),
                hook=_hook(ADVANCE, "after", job=LAKE_JOB, entity=f"{first.source}.{first.entity}"),
                finishes=True,
            )
        )
    return points


def sap_inbound_points(ctx: Context) -> list[KillPoint]:
    """Flow 10: mid-page of the SAP read, between lake and Dataverse, mid-bulk-upsert."""
    from shared.services.sap_inbound import JOB

    pages = math.ceil(ctx.sap_orders / SAP_PAGE)
    points = [
        KillPoint(
            "sap_inbound",
            "mid-page",
            f"SAP is serving sales order change page {page}",
            0,
            (0, 0, page),
            hold=HoldRule("sap", "GET", rf"{SALES_ORDER_SRV}A_SalesOrder\?", page, "after"),
        )
        for page in range(1, min(pages, 2) + 1)
    ]
    points += [
        KillPoint(
            "sap_inbound",
            "mid-page",
            "SAP is serving equipment change page 1",
            0,
            (0, 1),
            hold=HoldRule("sap", "GET", rf"{EQUIPMENT_SRV}Equipment\?", 1, "after"),
        ),
        KillPoint(
            "sap_inbound",
            "bronze-written-silver-not-committed",
            "sales orders in bronze, silver/sap_orders MERGE not started",
            0,
            (0, 2),
            hook=_hook(MERGE_SILVER, "before", **{"spec.table": "sap_orders"}),
        ),
        KillPoint(
            "sap_inbound",
            "lake-committed-dataverse-not-written",
            "orders, items and equipment committed to silver, nothing sent to Dataverse",
            0,
            (0, 3),
            hook=_hook(MERGE_SILVER, "after", **{"spec.table": "sap_equipment"}),
        ),
        KillPoint(
            "sap_inbound",
            "mid-bulk-upsert",
            "sales orders $batch applied by Dataverse, the answer lost",
            0,
            (0, 4),
            hold=HoldRule("dataverse", "POST", rf"{API}\$batch", 1, "after"),
        ),
        KillPoint(
            "sap_inbound",
            "mid-bulk-upsert",
            "order items UpsertMultiple in flight (not applied)",
            0,
            (0, 6),
            hold=HoldRule(
                "dataverse",
                "POST",
                f"{API}salesorderdetails/Microsoft\\.Dynamics\\.CRM\\.UpsertMultiple",
                1,
                "before",
            ),
        ),
        KillPoint(
            "sap_inbound",
            "committed-watermark-not-advanced",
            "lake and Dataverse committed, sales order watermark not advanced",
            0,
            (0, 7),
            hook=_hook(ADVANCE, "before", job=JOB, entity="A_SalesOrder"),
        ),
        KillPoint(
            "sap_inbound",
            "watermark-advanced-next-not",
            "sales order watermark advanced, equipment watermark not",
            0,
            (0, 8),
            hook=_hook(ADVANCE, "after", job=JOB, entity="A_SalesOrder"),
            finishes=True,
        ),
    ]
    if ctx.quote_orders:
        points.append(
            KillPoint(
                "sap_inbound",
                "quote-ordered-watermark-not-advanced",
                "an order for a hub quote landed and the quote was marked ordered; its items "
                "not sent, the watermark not advanced",
                0,
                (0, 5),
                hook=_hook(QUOTE_SAVE, "after"),
            )
        )
    return points


def sap_outbound_points(ctx: Context) -> list[KillPoint]:
    """Flow 11: mid-PATCH to SAP (before/after it applied), written but no delta token."""
    from shared.services.sap_outbound import JOB

    points: list[KillPoint] = []
    # Orders already written are "already in SAP" on the re-run (no PATCH): plan PATCH numbers
    # low enough that a second kill in this job still finds one to hold.
    for nth in range(1, min(2, ctx.outbound_edits // 3) + 1):
        for phase in ("before", "after"):
            lost = "applied by SAP, its answer lost" if phase == "after" else "not applied"
            points.append(
                KillPoint(
                    "sap_outbound",
                    "mid-sap-batch",
                    f"PATCH {nth} of a sales order in flight ({lost})",
                    0,
                    (0, 0, nth),
                    hold=HoldRule("sap", "PATCH", rf"{SALES_ORDER_SRV}A_SalesOrder\('", nth, phase),
                )
            )
    points += [
        KillPoint(
            "sap_outbound",
            "written-token-not-advanced",
            "every order change written to SAP, salesorders delta token not saved",
            0,
            (0, 1),
            hook=_hook(ADVANCE, "before", job=JOB, entity="salesorders"),
        ),
        KillPoint(
            "sap_outbound",
            "token-advanced-prices-not-read",
            "salesorders delta token saved, price changes not read",
            0,
            (0, 2),
            hook=_hook(ADVANCE, "after", job=JOB, entity="salesorders"),
            finishes=True,
        ),
        KillPoint(
            "sap_outbound",
            "prices-read-token-not-advanced",
            "price baseline read, productpricelevels delta token not saved",
            1,
            (1, 0),
            hook=_hook(ADVANCE, "before", job=JOB, entity="productpricelevels"),
        ),
    ]
    return points


EXPORTED = (
    "accounts",
    "products",
    "productpricelevels",
    "goals",
    "quotes",
    "salesorders",
    "salesorderdetails",
)
"""Change-tracked tables that hold rows when flow 7 runs in the pipeline (opportunities may not)."""


def export_points(ctx: Context) -> list[KillPoint]:
    """Flow 7: per table, mid-page, bronze written but silver not, silver but no delta token."""
    from shared.services import dataverse_to_lake

    order = [t.entity_set for t in dataverse_to_lake.EXPORT_TABLES]
    job = dataverse_to_lake.JOB
    points: list[KillPoint] = []
    for entity_set in EXPORTED:
        unit = order.index(entity_set)
        points += [
            KillPoint(
                "dataverse_to_lake",
                "mid-page",
                f"Dataverse is serving {entity_set} change page 1",
                unit,
                (unit, 0),
                hold=HoldRule("dataverse", "GET", rf"{API}{entity_set}(\?|$)", 1, "after"),
            ),
            KillPoint(
                "dataverse_to_lake",
                "bronze-written-silver-not-committed",
                f"{entity_set}: changes in bronze, silver MERGE not started",
                unit,
                (unit, 1),
                hook=_hook(MERGE_SILVER, "before", **{"spec.table": f"dataverse_{entity_set}"}),
            ),
            KillPoint(
                "dataverse_to_lake",
                "silver-committed-token-not-advanced",
                f"{entity_set}: silver committed, delta token not saved",
                unit,
                (unit, 2),
                hook=_hook(ADVANCE, "before", job=job, entity=entity_set),
            ),
            KillPoint(
                "dataverse_to_lake",
                "token-advanced-next-table-not-read",
                f"{entity_set}: delta token saved, the next table not read",
                unit,
                (unit, 3),
                hook=_hook(ADVANCE, "after", job=job, entity=entity_set),
                finishes=True,
            ),
        ]
    # Tables read in full each run (no token): silver itself is their state.
    for index, table in enumerate(getattr(dataverse_to_lake, "SNAPSHOT_TABLES", ())):
        unit = len(order) + index
        points.append(
            KillPoint(
                "dataverse_to_lake",
                "bronze-written-silver-not-committed",
                f"{table.entity_set} snapshot: changed rows in bronze, silver MERGE not started",
                unit,
                (unit, 1),
                hook=_hook(MERGE_SILVER, "before", **{"spec.table": table.spec.table}),
            )
        )
    return points


CATALOGUE = {
    "mainframe_poll": mainframe_points,
    "dataverse_load": load_points,
    "quote_push": quote_points,
    "lake_ingest": ingest_points,
    "sap_inbound": sap_inbound_points,
    "sap_outbound": sap_outbound_points,
    "dataverse_to_lake": export_points,
}


REQUIRED_KINDS = (
    "mid-page",
    "bronze-written-silver-not-committed",
    "silver-committed-watermark-not-advanced",
    "mid-bulk-upsert",
    "mid-sap-batch",
)
"""The kill points issue 8 names: every full plan holds one of each (on a job that has it)."""


def _reachable(points: Sequence[KillPoint]) -> bool:
    """Each point is still passed by the re-run that follows the previous kill."""
    for before, after in itertools.pairwise(points):
        if after.position < before.position or after == before:
            return False
        if before.finishes and after.unit <= before.unit:
            return False
        if before.message is not None and after.message == before.message:
            return False
    return True


def _add(rng: random.Random, chosen: dict[str, list[KillPoint]], pool: list[KillPoint]) -> bool:
    """Add one point of ``pool`` that keeps its stage's sequence reachable; False if none."""
    for one in rng.sample(pool, len(pool)):
        current = chosen[one.stage]
        if len(current) >= MAX_PER_STAGE:
            continue
        attempt = sorted([*current, one], key=lambda p: p.position)
        if _reachable(attempt):
            chosen[one.stage] = attempt
            return True
    return False


def plan(
    rng: random.Random,
    ctx: Context,
    stages: Sequence[str],
    total: int,
    *,
    kinds: Sequence[str] = (),
    only_kinds: bool = False,
) -> dict[str, list[KillPoint]]:
    """``total`` kill points over ``stages``, drawn with ``rng``.

    First one point of each of ``kinds`` (on any stage that has one), then one on every stage
    still without a point, then the rest at random; each stage's points stay reachable in
    order and at most ``MAX_PER_STAGE``. ``only_kinds`` stops after the named kinds (the
    reduced suite, which wants exactly those).
    """
    candidates = {s: CATALOGUE[s](ctx) for s in stages}
    chosen: dict[str, list[KillPoint]] = {s: [] for s in stages}
    for kind in kinds:
        pool = [p for s in stages for p in candidates[s] if p.kind == kind]
        if not _add(rng, chosen, pool):
            raise ValueError(f"no reachable kill point of kind {kind!r} in {list(stages)}")
    if only_kinds:
        return chosen
    for stage in stages:
        if not chosen[stage] and not _add(rng, chosen, candidates[stage]):
            raise ValueError(f"no kill point for {stage}")
    while sum(len(p) for p in chosen.values()) < total:
        if not _add(rng, chosen, [p for s in stages for p in candidates[s]]):
            raise ValueError(f"only {sum(len(p) for p in chosen.values())} reachable points")
    return chosen
