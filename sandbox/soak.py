"""The fault soak: every flow of the hub, end to end, with every peer misbehaving.

``run_soak(seed, scale, faults, state_dir)`` starts its own world (peers, its own Azurite, the app
behind the dev HTTP adapter and the local dispatcher), seeds the generated Contoso data and drives
every flow the way production would run it:

1. quote intake over HTTP, the Service Bus push to Dataverse, sales users qualifying a third of
   the quotes, the ``quote_qualification`` timer and its signed callbacks; the mainframe poll
   into the lake (and gold), the silver → Dataverse load and the SAP inbound batch;
2. a second wave of business changes: quote revisions, mainframe transactions, SAP orders placed
   for qualified quotes, order confirmations made in Sales (flow 11 work), and urgent order
   updates both ways (flow 12: per order three versions out of order, a duplicate and a
   malformed message); then the pushes and every timer: mainframe poll, load, SAP outbound and
   inbound, qualification, the Quoting Tool lake ingest, the Dataverse → lake export and gold;
3. optionally (``quiesce``), every timer once more.

With ``faults=True`` every peer (Entra, Key Vault, Dataverse, SAP, the mainframe and the Quoting
Tool) answers the hub's traffic with 10 % 429 + ``Retry-After``, 5 % 503, 2 % timeouts and 1 %
connection resets, half of the 5xx/timeouts/resets *after* the operation ran (``faultPhase``
mixed: the write happened, its answer is lost — the real test of idempotency). The peer's timeout
fault holds the connection ``timeoutMs`` = the hub's HTTP timeout + 0.5 s, so every timeout is a
real client timeout. The soak world sets ``HTTP_TIMEOUT_SECONDS`` to ``http_timeout`` (3 s by
default, not the sandbox's 5 s) so a timeout costs little; a big world needs more, since its
largest real answers must stay well inside it (``SoakResult.slowest_answers`` shows the margin).
Faults apply only to the hub's traffic: they are switched off while the driver plays a sales user
or seeds data (control routes are never faulted anyway) and switched on again with a new seed per
phase.

A timer that fails is run again, as its next tick would in production (at most ``max_ticks``
times, pausing between ticks); a failure that outlasts them is ``SoakNotConverged``. Messages are
delivered ``maxConcurrentCalls`` (host.json) at a time, redelivered by the dispatcher as Service
Bus would and dead-lettered after 10 deliveries.

The result is a normalised **final state** (``SoakResult.snapshot``): Dataverse tables by alternate
key, SAP entity sets by key, every silver and gold Delta table, the Quoting Tool's callbacks by
idempotency key, the hub's quote records, rejections, conflicts and dead letters, with what is
volatile by nature removed (ids, system stamps, ETags, ingestion times, run ids, SAP change stamps:
``VOLATILE``) and GUIDs replaced by the business key of the row they name, so two runs with the
same seed compare equal exactly when they reached the same state. ``compare`` diffs two snapshots
into lost, duplicated and changed records. ``SoakResult`` also carries the measured counts: records
per flow, faults injected per peer and kind (the peers' request logs), retries, rejections, ticks
and elapsed seconds, and ``RetryBounds``: from the peers' logs, grouped by the
``x-ms-client-request-id`` the hub's ``HttpClient`` (and the Azure SDK) sends once per logical
request, every request's attempts and every wait between attempts, checked against the policy.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests

from sandbox.datagen import (
    DEFAULT_AS_OF,
    ContosoData,
    generate,
    sap_order_for_quote,
    to_jsonable,
)
from sandbox.endstate import silver_keys
from sandbox.peer import Faults
from sandbox.world import World

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
PEERS = ("entra", "keyVault", "dataverse", "sap", "mainframe", "quotingTool")
HUB_HTTP_PEERS = ("dataverse", "sap", "mainframe", "quotingTool")
"""Peers the hub reaches through ``shared.http.HttpClient`` (its retry policy applies)."""
SDK_PEERS = ("keyVault",)
"""Peers the hub reaches through an Azure SDK client (azure-core's retry policy applies)."""
DELIVERY_CONCURRENCY = int(
    json.loads((ROOT / "host.json").read_text(encoding="utf-8"))["extensions"]["serviceBus"][
        "maxConcurrentCalls"
    ]
)
"""Messages delivered at once, as host.json lets the host: revisions, pushes and urgent updates
overlap as they would in production, and the end state must still equal the fault-free run's."""
DEFAULT_HTTP_TIMEOUT = 3.0
DEFAULT_MAX_TICKS = 8
WAIT_SLACK_SECONDS = 2.0
"""Scheduling, TLS handshakes and logging between a client's wait and the peer's next log entry."""
RETRY_AFTER_TOLERANCE = 0.05
"""Clock granularity: the peer stamps the 429 just before the client reads it."""
MAINFRAME_NOW = DEFAULT_AS_OF + dt.timedelta(hours=12)
"""The mainframe's pinned business clock, so its ``LSTUPD`` stamps are the same in every run."""
NEW_SAP_ORDER_STAMP = "2026-11-02T00:00:00Z"
URGENT_SAP_VERSION = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
QUALIFY_EVERY = 3
REVISE_EVERY = 5

# ---- what is volatile by nature (differs between two fault-free runs with the same seed) -------
DATAVERSE_SYSTEM = frozenset(
    {
        "createdon",
        "modifiedon",
        "overriddencreatedon",
        "versionnumber",
        # SAP's LastChangeDateTime of the order version written: a wall-clock stamp of SAP's.
        "contoso_sapversion",
    }
)
SAP_VOLATILE = frozenset({"LastChangeDateTime", "LastChangeDate", "CreationDate"})
LAKE_VOLATILE = frozenset({"bronze_path", "run_id", "content_hash", "ingested_at", "deleted_at"})
"""Lineage every silver table carries: where and when the hub ingested the row's version."""
LAKE_VOLATILE_BY_PREFIX: dict[str, frozenset[str]] = {
    # Dataverse exports: modifiedon, its refinement and the row version are system stamps.
    "dataverse_": frozenset({"modified_on", "source_modified_at", "version_number"}),
    # SAP's LastChangeDateTime: the wall clock of each change the run made in SAP.
    "sap_": frozenset({"source_modified_at"}),
}
LAKE_VOLATILE_BY_TABLE: dict[str, frozenset[str]] = {
    "dataverse_salesorders": frozenset({"contoso_sapversion"}),
    # When the hub received a quote revision.
    "quotes": frozenset({"created_at", "received_at"}),
    # Operational figures: run counts, records read (a re-run re-reads), lags and run times.
    "integration_health": frozenset(
        {
            "lag_seconds",
            "last_source_modified_at",
            "last_success_at",
            "runs",
            "records_in",
            "records_rejected",
            "rejection_rate",
        }
    ),
}
GOLD_KEYS: dict[str, tuple[str, ...]] = {"integration_health": ("source", "silver_table")}
LAKE_SKIPPED = frozenset({"ingestion_runs"})
"""Run logs: one row per run, so a run that failed and was re-run adds rows by design."""
CALLBACK_VOLATILE = frozenset({"qualifiedAt", "trackingId"})
VOLATILE = {
    "dataverse": sorted(DATAVERSE_SYSTEM | {"<primary id>", "@odata.*", "*@OData.*"}),
    "sap": sorted(SAP_VOLATILE),
    "lake": sorted(LAKE_VOLATILE),
    "lakeByTablePrefix": {k: sorted(v) for k, v in LAKE_VOLATILE_BY_PREFIX.items()},
    "lakeByTable": {k: sorted(v) for k, v in LAKE_VOLATILE_BY_TABLE.items()},
    "lakeSkipped": sorted(LAKE_SKIPPED),
    "callbacks": sorted(CALLBACK_VOLATILE),
}
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class SoakNotConverged(RuntimeError):
    """A timer or the dispatcher did not reach a clean run within its bounded ticks."""


@dataclass(frozen=True)
class FaultProfile:
    """The fault mix every peer applies to the hub's traffic (``PUT /_sandbox/faults``)."""

    rate429: float = 0.10
    rate5xx: float = 0.05
    rate_timeout: float = 0.02
    rate_reset: float = 0.01
    retry_after_seconds: float = 1.0
    phase: str = "mixed"

    def body(self, seed: int, timeout_ms: int) -> dict[str, Any]:
        """The peer's fault settings for one phase, in the peer's own shape (``Faults``)."""
        return asdict(
            Faults(
                rate429=self.rate429,
                retryAfterSeconds=self.retry_after_seconds,
                rate5xx=self.rate5xx,
                rateTimeout=self.rate_timeout,
                rateReset=self.rate_reset,
                seed=seed,
                timeoutMs=timeout_ms,
                faultPhase=self.phase,
            )
        )


@dataclass
class RetryBounds:
    """Attempts per logical request and the waits between them, from the peers' request logs."""

    max_attempts: dict[str, int] = field(default_factory=dict)
    logical_requests: dict[str, int] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    retried_requests: dict[str, int] = field(default_factory=dict)
    most_attempts: dict[str, int] = field(default_factory=dict)
    ungrouped: dict[str, int] = field(default_factory=dict)
    waits_checked: int = 0
    retry_after_waits: int = 0
    shortest_retry_after_wait: float | None = None
    longest_wait: float = 0.0
    most_over_ceiling: float = 0.0
    """The largest amount by which a measured wait exceeded the policy's ceiling for it (time
    spent connecting and scheduling; a violation beyond ``WAIT_SLACK_SECONDS``)."""
    violations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No request exceeded its attempts and no wait broke Retry-After or the cap."""
        return not self.violations

    def retries(self) -> dict[str, int]:
        """Attempts beyond the first, per peer."""
        return {p: self.attempts[p] - self.logical_requests[p] for p in self.attempts}


@dataclass
class SoakResult:
    """What one soak run reached and measured (see the module docstring)."""

    seed: int
    scale: int
    faults: bool
    snapshot: dict[str, Any]
    records: dict[str, int]
    faults_injected: dict[str, dict[str, int]]
    requests: dict[str, int]
    slowest_answers: dict[str, float]
    """Per peer, the longest a request without a fault took on the peer (seconds): the margin
    the hub's HTTP timeout has over real answers."""
    source_records: dict[str, int]
    """Records the flows took in from the source systems and people (see ``_source_records``)."""
    retries: dict[str, Any]
    retry_bounds: RetryBounds
    rejections: dict[str, int]
    dead_letters: int
    callback_conflicts: list[dict[str, Any]]
    ticks: dict[str, int]
    failed_ticks: list[dict[str, str]]
    elapsed_seconds: dict[str, float]
    settings: dict[str, Any]

    def figures(self) -> dict[str, Any]:
        """The measured numbers (no snapshot), JSON-ready."""
        bounds = asdict(self.retry_bounds)
        bounds["ok"] = self.retry_bounds.ok
        bounds["violations"] = self.retry_bounds.violations[:20]
        return {
            "seed": self.seed,
            "scale": self.scale,
            "faults": self.faults,
            "records": self.records,
            "faultsInjected": self.faults_injected,
            "faultsInjectedTotal": sum(sum(k.values()) for k in self.faults_injected.values()),
            "sourceRecords": self.source_records,
            "sourceRecordsTotal": sum(self.source_records.values()),
            "requests": self.requests,
            "slowestAnswerSeconds": self.slowest_answers,
            "retries": self.retries,
            "retryBounds": bounds,
            "rejections": self.rejections,
            "deadLetters": self.dead_letters,
            "callbackConflicts": len(self.callback_conflicts),
            "ticks": self.ticks,
            "failedTicks": self.failed_ticks,
            "elapsedSeconds": self.elapsed_seconds,
            "settings": self.settings,
        }

    def to_json(self) -> dict[str, Any]:
        """Everything, snapshot included, as JSON values (``from_json`` reads it back)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SoakResult:
        """The result ``to_json`` wrote (a run in another process: ``spawn_soak``)."""
        values = dict(data)
        values["retry_bounds"] = RetryBounds(**values["retry_bounds"])
        return cls(**values)


@dataclass
class Comparison:
    """How a run's snapshot differs from a reference snapshot, record by record."""

    lost: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        """Nothing lost, extra, changed or duplicated."""
        return not (self.lost or self.extra or self.changed or self.duplicated)

    def report(self, limit: int = 40) -> str:
        """A readable diff: one line per difference, the first ``limit`` of them."""
        lines = [
            f"lost {len(self.lost)}, extra {len(self.extra)}, changed {len(self.changed)}, "
            f"duplicated {len(self.duplicated)}"
        ]
        lines += [f"  lost      {k}" for k in self.lost[:limit]]
        lines += [f"  extra     {k}" for k in self.extra[:limit]]
        lines += [f"  duplicated {k}" for k in self.duplicated[:limit]]
        lines += [f"  changed   {d}" for d in self.details[:limit]]
        return "\n".join(lines)


def compare(reference: Mapping[str, Any], run: Mapping[str, Any]) -> Comparison:
    """Diff two snapshots: records (``section/table/key``) lost, extra, changed; and every key
    that occurs more than once in ``run`` (duplicates are kept as lists by the snapshot)."""
    result = Comparison()
    for section in sorted(set(reference) | set(run)):
        ref_tables = reference.get(section) or {}
        run_tables = run.get(section) or {}
        for table in sorted(set(ref_tables) | set(run_tables)):
            ref_rows = ref_tables.get(table) or {}
            run_rows = run_tables.get(table) or {}
            for key in sorted(set(ref_rows) | set(run_rows)):
                name = f"{section}/{table}/{key}"
                if key not in run_rows:
                    result.lost.append(name)
                elif key not in ref_rows:
                    result.extra.append(name)
                elif ref_rows[key] != run_rows[key]:
                    result.changed.append(name)
                    result.details.append(f"{name}: {_field_diff(ref_rows[key], run_rows[key])}")
                if isinstance(run_rows.get(key), dict) and "__duplicates__" in run_rows[key]:
                    result.duplicated.append(name)
    return result


def _field_diff(a: Any, b: Any) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        parts = [
            f"{k}: {a.get(k)!r} -> {b.get(k)!r}"
            for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)
        ]
        return "; ".join(parts)[:600]
    return f"{a!r} -> {b!r}"[:600]


# ---- the soak world -----------------------------------------------------------------------------


@dataclass
class SoakWorld(World):
    """The sandbox world with a shorter HTTP timeout for the hub, so timeouts cost little."""

    http_timeout: float = DEFAULT_HTTP_TIMEOUT

    def settings(self) -> dict[str, str]:
        """The sandbox settings with ``HTTP_TIMEOUT_SECONDS`` = ``http_timeout``."""
        values = super().settings()
        values["HTTP_TIMEOUT_SECONDS"] = f"{self.http_timeout:g}"
        return values


def run_soak(
    seed: int,
    scale: int,
    faults: bool,
    state_dir: Path,
    *,
    profile: FaultProfile | None = None,
    http_timeout: float = DEFAULT_HTTP_TIMEOUT,
    max_ticks: int = DEFAULT_MAX_TICKS,
    quiesce: bool = True,
    keep_state: bool = False,
) -> SoakResult:
    """Run every flow once over the generated data (see the module docstring).

    ``quiesce`` adds the final pass of every timer (the reduced soak of ``make test`` leaves it
    out: each timer has already had a clean run after its last failure).
    The process environment and the app's cached adapters are restored afterwards, so a test
    session's own world keeps working. ``state_dir`` (TLS material, Azurite's folder) is removed
    unless ``keep_state``.
    """
    saved = dict(os.environ)
    world = SoakWorld(Path(state_dir), http_timeout=http_timeout)
    started = time.perf_counter()
    try:
        world.start()
        world.start_app()
        soak = _Soak(world, seed, scale, faults, profile or FaultProfile(), max_ticks, quiesce)
        soak.elapsed["startup"] = time.perf_counter() - started
        return soak.run()
    finally:
        world.stop()
        os.environ.clear()
        os.environ.update(saved)
        _reset_app()
        if not keep_state:
            shutil.rmtree(state_dir, ignore_errors=True)


def _reset_app() -> None:
    from shared import wiring

    wiring.reset()


class _Soak:
    """One run: the driver, its counters and the snapshot."""

    def __init__(
        self,
        world: World,
        seed: int,
        scale: int,
        faults: bool,
        profile: FaultProfile,
        max_ticks: int,
        quiesce: bool,
    ) -> None:
        self.world = world
        self.quiesce = quiesce
        self.seed = seed
        self.scale = scale
        self.faults = faults
        self.profile = profile
        self.max_ticks = max_ticks
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.verify = str(world.ca_bundle)
        self.endpoints = world.endpoints()
        self.settings = world.settings()
        self.phase = 0
        self.ticks: Counter[str] = Counter()
        self.timings: defaultdict[str, float] = defaultdict(float)
        self.failed_ticks: list[dict[str, str]] = []
        self.elapsed: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.seeded: dict[str, int] = {}
        self.data: ContosoData | None = None
        self.quotes: dict[str, dict[str, Any]] = {}
        self.qualified: list[str] = []

    # ---- driving ------------------------------------------------------------------------------
    def run(self) -> SoakResult:
        clock = time.perf_counter()
        self._seed()
        self.elapsed["seed"] = time.perf_counter() - clock
        clock = time.perf_counter()
        self._faults_on()
        self._wave_one()
        self._wave_two()
        if self.quiesce:
            self._quiesce()
        self._faults_off()
        self.elapsed["flows"] = time.perf_counter() - clock
        clock = time.perf_counter()
        result = self._result()
        self.elapsed["snapshot"] = time.perf_counter() - clock
        result.elapsed_seconds = {k: round(v, 3) for k, v in self.elapsed.items()}
        result.elapsed_seconds |= {f"in:{k}": round(v, 3) for k, v in sorted(self.timings.items())}
        return result

    def _wave_one(self) -> None:
        self._post_quotes([self.quotes[q] for q in sorted(self.quotes)], "quotesPosted")
        self._deliver()
        with self._as_user():
            self._qualify()
        self._until_ok("quote_qualification")
        self._until_ok("mainframe_poll")
        self._until_ok("dataverse_load")
        self._until_ok("sap_inbound")

    def _wave_two(self) -> None:
        with self._as_user():
            revisions = self._revisions()
            self._mainframe_transactions()
            self._sap_orders_for_quotes()
            self._confirm_orders_in_sales()
        self._post_quotes(revisions, "revisionsPosted")
        self._urgent_updates()
        self._deliver()
        for timer in (
            "mainframe_poll",
            "dataverse_load",
            "sap_outbound",
            "sap_inbound",
            "quote_qualification",
            "lake_ingest",
            "dataverse_to_lake",
            "gold_rebuild",
        ):
            self._until_ok(timer)

    def _quiesce(self) -> None:
        """Every timer once more: whatever a failed tick left undone is done by now, and a
        clean pass must find nothing new to send."""
        for timer in (
            "quote_qualification",
            "mainframe_poll",
            "dataverse_load",
            "lake_ingest",
            "sap_inbound",
            "sap_outbound",
            "dataverse_to_lake",
            "gold_rebuild",
        ):
            self._until_ok(timer)
        self._deliver()

    def _until_ok(self, timer: str) -> None:
        for tick in range(1, self.max_ticks + 1):
            self.ticks[timer] += 1
            began = time.perf_counter()
            try:
                self.world.hub.run_timer(timer)
                return
            except Exception as exc:  # the host records it; the next tick runs it again
                self.failed_ticks.append(
                    {"timer": timer, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                )
                log.warning("soak: %s tick %d failed: %s", timer, tick, exc)
                # The schedule's next tick, compressed: long enough for a Retry-After to pass.
                time.sleep(min(5.0, float(tick)))
            finally:
                self.timings[timer] += time.perf_counter() - began
        raise SoakNotConverged(
            f"{timer} still failing after {self.max_ticks} ticks: {self.failed_ticks[-1]['error']}"
        )

    def _deliver(self) -> None:
        began = time.perf_counter()
        stats = self.world.hub.dispatcher.run_until_idle(concurrency=DELIVERY_CONCURRENCY)
        self.timings["dispatcher"] += time.perf_counter() - began
        self.counts["messagesDelivered"] = self.counts.get("messagesDelivered", 0) + stats.completed
        self.counts["messageRedeliveries"] = (
            self.counts.get("messageRedeliveries", 0) + stats.abandoned
        )

    # ---- faults -------------------------------------------------------------------------------
    def _faults_on(self) -> None:
        if not self.faults:
            return
        self.phase += 1
        timeout_ms = int(float(self.settings["HTTP_TIMEOUT_SECONDS"]) * 1000) + 500
        for index, peer in enumerate(PEERS):
            body = self.profile.body(self.seed * 1000 + self.phase * 10 + index, timeout_ms)
            self._put_faults(peer, body)

    def _faults_off(self) -> None:
        if self.faults:
            for peer in PEERS:
                self._put_faults(peer, {})

    def _put_faults(self, peer: str, body: dict[str, Any]) -> None:
        response = self.http.put(f"{self.endpoints[peer]}/_sandbox/faults", json=body, timeout=30)
        response.raise_for_status()

    @contextlib.contextmanager
    def _as_user(self) -> Iterator[None]:
        """People and other systems acting directly on a peer: the faults are the hub's."""
        self._faults_off()
        try:
            yield
        finally:
            self._faults_on()

    # ---- seeding ------------------------------------------------------------------------------
    def _seed(self) -> None:
        data = generate(self.seed, self.scale)
        self.data = data
        self._control("mainframe", "seed", {"settings": [{"now": f"{MAINFRAME_NOW:%Y%m%d%H%M%S}"}]})
        self._seed_tables("dataverse", data.dataverse_seed())
        self._seed_tables("sap", data.sap_seed())
        self._seed_tables("mainframe", data.mainframe_seed())
        quotes = [to_jsonable(q) for q in data.quoting_tool_quotes()]
        self.quotes = {str(q["quoteId"]): q for q in quotes}
        self._control("quotingTool", "seed", {"quotes": quotes})
        self.seeded["quotingTool.quotes"] = len(quotes)

    def _seed_tables(self, peer: str, tables: Mapping[str, Any], chunk: int = 5000) -> None:
        for name, table in tables.items():
            rows = [to_jsonable(r) for r in table]
            for start in range(0, len(rows), chunk):
                self._control(peer, "seed", {name: rows[start : start + chunk]})
            self.seeded[f"{peer}.{name}"] = len(rows)

    def _control(self, peer: str, route: str, body: Any) -> Any:
        response = self.http.post(
            f"{self.endpoints[peer]}/_sandbox/{route}", json=body, timeout=300
        )
        if response.status_code != 200:
            raise RuntimeError(f"{peer} {route}: {response.status_code} {response.text[:300]}")
        return response.json()

    def _records(self, peer: str, table: str) -> list[dict[str, Any]]:
        response = self.http.get(f"{self.endpoints[peer]}/_sandbox/records/{table}", timeout=300)
        response.raise_for_status()
        rows: list[dict[str, Any]] = response.json()["records"]
        return rows

    # ---- wave one: quotes ---------------------------------------------------------------------
    def _post_quotes(self, quotes: Sequence[Mapping[str, Any]], counter: str) -> None:
        url = f"{self.world.hub.base_url}/api/quotes"
        headers = {"x-functions-key": str(self.world.hub.function_key)}
        statuses: Counter[int] = Counter()
        for quote in quotes:
            response = self.http.post(url, json=quote, headers=headers, timeout=120)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                raise RuntimeError(f"quote intake answered {response.status_code}: {response.text}")
        self.counts[counter] = len(quotes)
        self.counts[f"{counter}Accepted"] = statuses[202]

    def _status(self, quote_id: str) -> dict[str, Any] | None:
        response = self.http.get(
            f"{self.world.hub.base_url}/api/quotes/{quote_id}",
            headers={"x-functions-key": str(self.world.hub.function_key)},
            timeout=60,
        )
        if response.status_code == 404:
            return None
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def _in_dataverse(self) -> list[str]:
        found = []
        for quote_id in sorted(self.quotes):
            status = self._status(quote_id)
            if status is not None and status["status"] == "inDataverse":
                found.append(quote_id)
        return found

    def _dataverse_user(self, method: str, path: str, body: Mapping[str, Any]) -> None:
        token = self.world.issuer.issue(self.world.test_client[0], self.endpoints["dataverse"])
        response = self.http.request(
            method,
            f"{self.endpoints['dataverse']}/api/data/v9.2/{path}",
            json=body,
            headers={"Authorization": f"Bearer {token}", "If-Match": "*"},
            timeout=60,
        )
        if response.status_code not in (200, 204):
            raise RuntimeError(f"sales user {method} {path}: {response.status_code}")

    def _qualify(self) -> None:
        """A sales user activates every third quote the hub pushed (Draft → Active)."""
        candidates = self._in_dataverse()
        self.qualified = candidates[::QUALIFY_EVERY]
        for quote_id in self.qualified:
            self._dataverse_user(
                "PATCH",
                f"quotes(contoso_quotingtoolid='{quote_id}')",
                {"statecode": 1, "statuscode": 2},
            )
        self.counts["quotesQualified"] = len(self.qualified)

    # ---- wave two: business changes -----------------------------------------------------------
    def _revisions(self) -> list[dict[str, Any]]:
        """Revision 2 of every fifth quote still in Draft: one line fewer (or one more unit)."""
        drafts = [q for q in self._in_dataverse() if q not in set(self.qualified)]
        revised = []
        for quote_id in drafts[::REVISE_EVERY]:
            quote = json.loads(json.dumps(self.quotes[quote_id]))
            quote["revision"] = int(quote["revision"]) + 1
            if len(quote["lines"]) > 1:
                quote["lines"] = quote["lines"][:-1]
            else:
                line = quote["lines"][0]
                line["quantity"] = str(Decimal(str(line["quantity"])) + 1)
            revised.append(quote)
        return revised

    def _mainframe_transactions(self) -> None:
        """Mainframe users ship every 50th order and recount every 20th inventory record."""
        assert self.data is not None
        seed = self.data.mainframe_seed()
        orders = [
            {"ORDNO": o["ORDNO"], "STATUS": "S"}
            for i, o in enumerate(to_jsonable(r) for r in seed["orders"])
            if i % 50 == 0
        ]
        inventory = [
            {"PLANT": r["PLANT"], "ITEMNO": r["ITEMNO"], "ONHAND": "0000100"}
            for i, r in enumerate(to_jsonable(x) for x in seed["inventory"])
            if i % 20 == 0
        ]
        self._control("mainframe", "touch", {"orders": orders, "inventory": inventory})
        self.counts["mainframeTransactions"] = len(orders) + len(inventory)

    def _sap_orders_for_quotes(self) -> None:
        """Every second qualified quote becomes a SAP order referencing it (flow 10 couples
        them and moves the quote to "ordered")."""
        orders = [
            sap_order_for_quote(
                self.quotes[quote_id],
                f"{90000000 + n}",
                order_date="2026-11-02",
                delivery_date="2027-01-15",
                changed_at=NEW_SAP_ORDER_STAMP,
            )
            for n, quote_id in enumerate(self.qualified[::2], start=1)
        ]
        if orders:
            self._control("sap", "seed", {"A_SalesOrder": orders})
        self.counts["sapOrdersForQuotes"] = len(orders)

    def _sap_orders(self) -> list[str]:
        assert self.data is not None
        return sorted(str(o["SalesOrder"]) for o in self.data.sap_seed()["A_SalesOrder"])

    def _confirm_orders_in_sales(self) -> None:
        """Sales confirms every tenth SAP order in Dynamics and moves its delivery date."""
        known = {
            str(r.get("contoso_sapsalesorder")) for r in self._records("dataverse", "salesorders")
        }
        chosen = [n for i, n in enumerate(self._sap_orders()) if i % 10 == 1 and n in known]
        for n, number in enumerate(chosen):
            self._dataverse_user(
                "PATCH",
                f"salesorders(contoso_sapsalesorder='{number}')",
                {
                    "contoso_confirmed": True,
                    "requestdeliveryby": (dt.date(2027, 3, 1) + dt.timedelta(days=n)).isoformat(),
                },
            )
        self.counts["ordersConfirmedInSales"] = len(chosen)

    def _urgent_updates(self) -> None:
        """Flow 12 both ways: per order three versions out of order, a duplicate and a malformed
        message (Dataverse → SAP), and a status change from SAP (SAP → Dataverse)."""
        dispatcher = self.world.hub.dispatcher
        to_sap = self.settings["URGENT_DATAVERSE_TO_SAP_QUEUE_NAME"]
        to_dataverse = self.settings["URGENT_SAP_TO_DATAVERSE_QUEUE_NAME"]
        known = {
            str(r.get("contoso_sapsalesorder")) for r in self._records("dataverse", "salesorders")
        }
        orders = self._sap_orders()
        sent = 0
        for i, number in enumerate(orders):
            if i % 10 == 3:
                day = dt.date(2027, 4, 1) + dt.timedelta(days=i % 28)
                updates = [
                    (
                        f"soak-{number}-{v}",
                        {
                            "orderNumber": number,
                            "sourceVersion": v,
                            "changes": {
                                "requestedDeliveryDate": (day + dt.timedelta(days=v)).isoformat(),
                                "confirmed": v % 2 == 1,
                            },
                        },
                    )
                    for v in (3, 1, 2)
                ]
                for message_id, body in [*updates, updates[0]]:
                    dispatcher.send(
                        to_sap, json.dumps(body), message_id=message_id, session_id=number
                    )
                dispatcher.send(
                    to_sap, "{not json", message_id=f"soak-{number}-bad", session_id=number
                )
                sent += 5
            elif i % 10 == 5 and number in known:
                version = URGENT_SAP_VERSION + dt.timedelta(minutes=i)
                body = {
                    "orderNumber": number,
                    "sourceVersion": version.isoformat().replace("+00:00", "Z"),
                    "changes": {
                        "status": "B",
                        "requestedDeliveryDate": (
                            dt.date(2027, 5, 1) + dt.timedelta(days=i % 28)
                        ).isoformat(),
                    },
                }
                dispatcher.send(
                    to_dataverse,
                    json.dumps(body),
                    message_id=f"soak-sap-{number}",
                    session_id=number,
                )
                sent += 1
        self.counts["urgentMessages"] = sent

    # ---- the result ---------------------------------------------------------------------------
    def _result(self) -> SoakResult:
        from shared import wiring

        logs = {peer: self._request_log(peer) for peer in PEERS}
        snapshot, records = self._snapshot()
        rejections: Counter[str] = Counter(r.flow for r in wiring.rejections().list())
        dead = snapshot["hub"]["deadLetters"]
        conflicts = [
            r for r in self._records("quotingTool", "rejections") if r.get("status") == 409
        ]
        policy = wiring.policy()
        clients = {
            "dataverse": wiring.dataverse().http.stats,
            "sap": wiring.sap()._http.stats,
            "mainframe": wiring.mainframe().stats,
            "quotingTool": wiring.quoting_tool().stats,
        }
        retries: dict[str, Any] = {
            "hubClients": {
                name: {
                    "requests": s.requests,
                    "retries": s.retries,
                    "throttled": s.throttled,
                    "exhausted": s.exhausted,
                    "sleptSeconds": round(s.slept_seconds, 3),
                    "longestWait": round(s.longest_wait, 3),
                }
                for name, s in clients.items()
            },
        }
        bounds = retry_bounds(
            logs,
            max_attempts=policy.max_attempts,
            base_delay=policy.base_delay,
            max_delay=policy.max_delay,
        )
        retries["byPeer"] = bounds.retries()
        retries["total"] = sum(bounds.retries().values())
        faults: dict[str, dict[str, int]] = {
            peer: dict(Counter(str(e["fault"]) for e in entries if e.get("fault")))
            for peer, entries in logs.items()
        }
        return SoakResult(
            seed=self.seed,
            scale=self.scale,
            faults=self.faults,
            snapshot=snapshot,
            records={**records, **self.counts},
            faults_injected=faults,
            requests={peer: len(entries) for peer, entries in logs.items()},
            slowest_answers={peer: _slowest(entries) for peer, entries in logs.items()},
            source_records=self._source_records(),
            retries=retries,
            retry_bounds=bounds,
            rejections=dict(sorted(rejections.items())),
            dead_letters=sum(len(v) for v in dead.values()),
            callback_conflicts=conflicts,
            ticks=dict(self.ticks),
            failed_ticks=self.failed_ticks,
            elapsed_seconds={},
            settings={
                "httpTimeoutSeconds": float(self.settings["HTTP_TIMEOUT_SECONDS"]),
                "retryMaxAttempts": policy.max_attempts,
                "retryBaseDelaySeconds": policy.base_delay,
                "retryMaxDelaySeconds": policy.max_delay,
                "faultProfile": asdict(self.profile) if self.faults else None,
                "maxTicks": self.max_ticks,
                "deliveryConcurrency": DELIVERY_CONCURRENCY,
            },
        )

    def _source_records(self) -> dict[str, int]:
        """What entered the hub: every mainframe record polled, every SAP order and equipment
        record read, every quote revision posted, every business change made for wave two and
        every urgent message. (Dataverse master data is seeded, not a flow's input.)"""
        mainframe = ("orders", "orderlines", "inventory", "customers")
        return {
            "mainframe": sum(self.seeded.get(f"mainframe.{e}", 0) for e in mainframe),
            "sapOrdersAndEquipment": self.seeded.get("sap.A_SalesOrder", 0)
            + self.seeded.get("sap.Equipment", 0),
            "quoteRevisions": self.counts.get("quotesPosted", 0)
            + self.counts.get("revisionsPosted", 0),
            "businessChanges": self.counts.get("quotesQualified", 0)
            + self.counts.get("mainframeTransactions", 0)
            + self.counts.get("sapOrdersForQuotes", 0)
            + self.counts.get("ordersConfirmedInSales", 0),
            "urgentMessages": self.counts.get("urgentMessages", 0),
        }

    def _request_log(self, peer: str) -> list[dict[str, Any]]:
        response = self.http.get(f"{self.endpoints[peer]}/_sandbox/requests", timeout=300)
        response.raise_for_status()
        entries: list[dict[str, Any]] = response.json()["requests"]
        return entries

    def _snapshot(self) -> tuple[dict[str, Any], dict[str, int]]:
        dataverse_raw = self._dataverse_tables()
        labels = self._labels(dataverse_raw)
        snapshot: dict[str, Any] = {
            "dataverse": _dataverse_snapshot(dataverse_raw, labels),
            "sap": self._sap_snapshot(),
            "lake": _lake_snapshot(labels),
            "callbacks": self._callbacks_snapshot(labels),
            "hub": self._hub_snapshot(labels),
        }
        # JSON values only, so a snapshot read back from another process compares equal.
        snapshot = json.loads(json.dumps(snapshot, default=str))
        return snapshot, self._record_counts(snapshot)

    def _dataverse_tables(self) -> dict[str, list[dict[str, Any]]]:
        from sandbox.dataverse.schema import Schema

        schema = Schema.load()
        return {t.entity_set: self._records("dataverse", t.entity_set) for t in _tables(schema)}

    def _labels(self, raw: Mapping[str, list[dict[str, Any]]]) -> dict[str, str]:
        """GUID → the business key of the row it names (``<set>:<key>``); users by role."""
        from sandbox.dataverse.schema import Schema

        schema = Schema.load()
        labels: dict[str, str] = {}
        roles = {
            self.world.hub_client[0].lower(): "hub",
            self.world.test_client[0].lower(): "sales-user",
        }
        for table in _tables(schema):
            for row in raw[table.entity_set]:
                row_id = str(row.get(table.primary_key) or "").lower()
                if not row_id:
                    continue
                if table.entity_set == "systemusers":
                    app = str(row.get("applicationid") or "").lower()
                    labels[row_id] = "user:" + roles.get(app, str(row.get("fullname") or "?"))
                else:
                    labels[row_id] = f"{table.entity_set}:{business_key(table, row)}"
        return labels

    def _sap_snapshot(self) -> dict[str, dict[str, Any]]:
        from sandbox.sap import model

        out: dict[str, dict[str, Any]] = {}
        for name, (_, entity_set) in model.ENTITY_SETS.items():
            rows: dict[str, Any] = {}
            for row in self._records("sap", name):
                clean = {k: v for k, v in row.items() if k not in SAP_VOLATILE}
                add_record(rows, "|".join(str(row.get(k)) for k in entity_set.keys), clean)
            out[name] = rows
        stock: dict[str, Any] = {}
        for row in self._records("sap", "stock"):
            add_record(stock, f"{row['Material']}|{row['Plant']}", row)
        out["stock"] = stock
        return out

    def _callbacks_snapshot(self, labels: Mapping[str, str]) -> dict[str, dict[str, Any]]:
        rows: dict[str, Any] = {}
        for callback in self._records("quotingTool", "callbacks"):
            body = {
                k: _relabel(v, labels)
                for k, v in callback["body"].items()
                if k not in CALLBACK_VOLATILE
            }
            add_record(rows, str(callback["idempotencyKey"]), body)
        return {"callbacks": rows}

    def _hub_snapshot(self, labels: Mapping[str, str]) -> dict[str, dict[str, Any]]:
        from shared import wiring
        from shared.adapters.quote_store import CURRENT, TABLE

        quotes: dict[str, Any] = {}
        table = wiring.tables().table(TABLE)
        for entity in table.query_entities("RowKey eq @r", parameters={"r": CURRENT}):
            lifecycle = json.loads(entity.get("Lifecycle") or "[]")
            add_record(
                quotes,
                str(entity["PartitionKey"]),
                {
                    "revision": int(entity["Revision"]),
                    "status": str(entity["Status"]),
                    "steps": [f"{s['step']}@r{s.get('revision')}" for s in lifecycle],
                    "dataverse": _relabel(entity.get("DataverseId") or "", labels),
                    "territory": json.loads(entity.get("Territory") or "{}"),
                    "approved": json.loads(entity.get("Approved") or "{}"),
                    "sapOrder": entity.get("SapOrderNumber") or "",
                    "pushedRevision": int(entity.get("PushedRevision", -1)),
                    "callbacks": json.loads(entity.get("Callbacks") or "[]"),
                    "rejectReason": _relabel(entity.get("RejectReason") or "", labels),
                },
            )
        rejections: dict[str, Any] = {}
        for r in wiring.rejections().list():
            add_record(
                rejections,
                f"{r.flow}|{r.key}",
                {"code": r.code, "reason": _relabel(_unstamp(r.reason), labels)},
            )
        conflicts: dict[str, Any] = {}
        for entity in wiring.tables().table("hubconflicts").list_entities():
            key = f"{entity['PartitionKey']}|{entity['Key']}|{entity['Winner']}>{entity['Loser']}"
            conflicts[key] = conflicts.get(key, 0) + 1
        dispatcher = self.world.hub.dispatcher
        dead: dict[str, Any] = {}
        for queue in dispatcher.queues:
            for letter in dispatcher.dead_letters(queue):
                add_record(
                    dead,
                    f"{queue}|{letter.message.message_id}",
                    {"reason": letter.reason, "description": letter.description[:300]},
                )
        return {
            "quotes": quotes,
            "rejections": rejections,
            "conflicts": conflicts,
            "deadLetters": dead,
        }

    def _record_counts(self, snapshot: Mapping[str, Any]) -> dict[str, int]:
        dv = snapshot["dataverse"]
        lake = snapshot["lake"]

        def size(section: Mapping[str, Any], *names: str) -> int:
            return sum(len(section.get(n) or {}) for n in names)

        return {
            "quotesInDataverse": size(dv, "quotes", "quotedetails"),
            "callbacks": size(snapshot["callbacks"], "callbacks"),
            "mainframeInSilver": size(
                lake,
                "silver/legacy_orders",
                "silver/legacy_order_lines",
                "silver/plant_inventory",
                "silver/customers",
            ),
            "quarantined": size(lake, "silver/quarantine"),
            "loadedToDataverse": size(
                dv,
                "accounts",
                "contoso_legacyorders",
                "contoso_legacyorderlines",
                "contoso_plantinventories",
            ),
            "exportedToLake": sum(
                len(rows) for name, rows in lake.items() if name.startswith("silver/dataverse_")
            ),
            "sapInboundToDataverse": size(
                dv, "salesorders", "salesorderdetails", "contoso_partners", "contoso_customerassets"
            ),
            "goldRows": sum(len(rows) for name, rows in lake.items() if name.startswith("gold/")),
        }


# ---- snapshot helpers ---------------------------------------------------------------------------


def _tables(schema: Any) -> list[Any]:
    return sorted(schema.tables.values(), key=lambda t: t.entity_set)


def business_key(table: Any, row: Mapping[str, Any]) -> str:
    """The row's first alternate key; rows without one (Dataverse allows any number of rows with
    an empty key, as the generated accounts without an account number are) by primary name."""
    keys = getattr(table, "keys", None) or []
    if keys:
        values = [row.get(c) for c in keys[0].columns]
        if any(v is not None for v in values):
            return "|".join(str(v) for v in values)
        return f"~{row.get(table.primary_name)}"
    return str(row.get(table.primary_name) or row.get(table.primary_key))


def _dataverse_snapshot(
    raw: Mapping[str, list[dict[str, Any]]], labels: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    from sandbox.dataverse.schema import Schema

    schema = Schema.load()
    out: dict[str, dict[str, Any]] = {}
    for table in _tables(schema):
        rows: dict[str, Any] = {}
        for row in raw[table.entity_set]:
            clean = {
                k: _relabel(v, labels)
                for k, v in row.items()
                if k != table.primary_key and "@" not in k and k not in DATAVERSE_SYSTEM
            }
            if table.entity_set == "systemusers":
                key = labels.get(str(row.get(table.primary_key)).lower(), "user:?")
            else:
                key = business_key(table, row)
            add_record(rows, key, clean)
        out[table.entity_set] = rows
    return out


def _lake_snapshot(labels: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    from shared import wiring
    from shared.lake.delta import open_table

    storage = wiring.lake()
    keys = silver_keys()
    out: dict[str, dict[str, Any]] = {}
    for layer in ("silver", "gold"):
        container = storage.blob_service.get_container_client(storage.container(layer))
        if not container.exists():
            continue
        names = sorted(
            {
                b.name.split("/_delta_log/")[0]
                for b in container.list_blobs()
                if "/_delta_log/" in b.name
            }
        )
        for name in names:
            if name in LAKE_SKIPPED:
                continue
            table = open_table(storage, layer, name)
            if table is None:
                continue
            drop = LAKE_VOLATILE | LAKE_VOLATILE_BY_TABLE.get(name, frozenset())
            for prefix, columns in LAKE_VOLATILE_BY_PREFIX.items():
                drop |= columns if name.startswith(prefix) else frozenset()
            key_columns = keys.get(name) if layer == "silver" else GOLD_KEYS.get(name)
            rows: dict[str, Any] = {}
            for row in table.to_pyarrow_table().to_pylist():
                clean = {k: _relabel(_plain(v), labels) for k, v in row.items() if k not in drop}
                if key_columns and all(k in row for k in key_columns):
                    key = "|".join(str(_relabel(_plain(row[k]), labels)) for k in key_columns)
                else:
                    # gold and the quarantine have no business key: the row is its own key,
                    # and a row held twice is a duplicate.
                    key = json.dumps(clean, sort_keys=True, default=str)
                add_record(rows, key, clean)
            out[f"{layer}/{name}"] = rows
    return out


def _slowest(entries: Sequence[Mapping[str, Any]]) -> float:
    durations = [
        float(e["at"]) - float(e["started"])
        for e in entries
        if not e.get("fault") and e.get("started") is not None
    ]
    return round(max(durations, default=0.0), 3)


def _plain(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date, Decimal)):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _relabel(value: Any, labels: Mapping[str, str]) -> Any:
    """Replace every GUID in a value by the business key of the row it names."""
    if isinstance(value, str) and _GUID.search(value):
        return _GUID.sub(lambda m: labels.get(m.group(0).lower(), "<unknown-guid>"), value)
    if isinstance(value, list):
        return [_relabel(v, labels) for v in value]
    if isinstance(value, dict):
        return {k: _relabel(v, labels) for k, v in value.items()}
    return value


_STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})?")


def _unstamp(text: str) -> str:
    return _STAMP.sub("<time>", text)


def add_record(rows: dict[str, Any], key: str, value: Any) -> None:
    """Add a record by key; a key seen twice keeps every version under ``__duplicates__``."""
    if key in rows:
        existing = rows[key]
        held = existing.get("__duplicates__") if isinstance(existing, dict) else None
        if held is None:
            rows[key] = {"__duplicates__": [existing, value]}
        else:
            held.append(value)
        return
    rows[key] = value


# ---- retry bounds -------------------------------------------------------------------------------


def retry_bounds(
    logs: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    max_attempts: int,
    base_delay: float,
    max_delay: float,
) -> RetryBounds:
    """Check every logical request in the peers' logs against the retry policy.

    Requests are grouped by ``clientRequestId`` (one per logical request, the same on its
    retries). For the hub's ``HttpClient`` peers a request may make ``max_attempts`` attempts plus
    one after a 401 (a token refresh is not a failed attempt). After an answer with Retry-After
    (an injected 429, or the system's own throttling such as Dataverse's service protection) the
    next attempt must wait at least ``min(Retry-After, max_delay)``: the policy honours the header
    up to its cap. No wait may exceed the policy's ceiling for it (that, or ``min(max_delay,
    base·2^(n-1))`` without the header) by more than ``WAIT_SLACK_SECONDS``. A wait is measured
    on the peer: from the end of one attempt to the start of the next. Key Vault is reached
    through azure-core, whose default policy allows ``retry_total`` retries plus the
    authentication challenge; its attempts are checked, its waits only measured. Entra's token
    requests (msal) carry no client request id: they are counted as ungrouped.
    """
    from azure.core.pipeline.policies import RetryPolicy as CoreRetryPolicy

    from shared.http import parse_retry_after

    core = CoreRetryPolicy()
    limits = dict.fromkeys(HUB_HTTP_PEERS, max_attempts + 1)
    limits |= dict.fromkeys(SDK_PEERS, core.total_retries + 2)
    bounds = RetryBounds(max_attempts=dict(limits))
    for peer, entries in logs.items():
        groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        ungrouped = 0
        for entry in entries:
            request_id = entry.get("clientRequestId")
            if request_id:
                groups[str(request_id)].append(entry)
            else:
                ungrouped += 1
        bounds.ungrouped[peer] = ungrouped
        bounds.logical_requests[peer] = len(groups) + ungrouped
        bounds.attempts[peer] = sum(len(g) for g in groups.values()) + ungrouped
        bounds.retried_requests[peer] = sum(1 for g in groups.values() if len(g) > 1)
        bounds.most_attempts[peer] = max(
            (len(g) for g in groups.values()), default=1 if ungrouped else 0
        )
        limit = limits.get(peer)
        for request_id, unordered in groups.items():
            group = sorted(unordered, key=lambda e: float(e.get("started") or e["at"]))
            if limit is not None and len(group) > limit:
                bounds.violations.append(
                    {
                        "peer": peer,
                        "request": request_id,
                        "kind": "attempts",
                        "attempts": len(group),
                        "limit": limit,
                        "path": group[0]["path"][:120],
                    }
                )
            if peer not in HUB_HTTP_PEERS:
                continue
            failed = 0
            for before, after in itertools.pairwise(group):
                gap = float(after.get("started") or after["at"]) - float(before["at"])
                bounds.waits_checked += 1
                bounds.longest_wait = max(bounds.longest_wait, gap)
                if before["status"] == 401:
                    continue
                failed += 1
                retry_after = parse_retry_after(before.get("retryAfter"))
                if retry_after is not None:
                    ceiling = min(retry_after, max_delay)
                    bounds.retry_after_waits += 1
                    shortest = bounds.shortest_retry_after_wait
                    bounds.shortest_retry_after_wait = (
                        gap if shortest is None else min(shortest, gap)
                    )
                    if gap < ceiling - RETRY_AFTER_TOLERANCE:
                        bounds.violations.append(
                            {
                                "peer": peer,
                                "request": request_id,
                                "kind": "retry-after",
                                "wait": round(gap, 3),
                                "retryAfter": retry_after,
                            }
                        )
                else:
                    ceiling = min(max_delay, base_delay * 2 ** (failed - 1))
                bounds.most_over_ceiling = max(bounds.most_over_ceiling, gap - ceiling)
                if gap > ceiling + WAIT_SLACK_SECONDS:
                    bounds.violations.append(
                        {
                            "peer": peer,
                            "request": request_id,
                            "kind": "cap",
                            "wait": round(gap, 3),
                            "ceiling": ceiling,
                        }
                    )
    return bounds


def figures_json(
    results: Sequence[SoakResult], comparison: Comparison, *, side_by_side: bool = False
) -> str:
    """The report of a soak comparison (``out/verify-soak.json``), reference run first: the
    headline figures of the faulted run against the reference, then every run's own figures.
    Measured numbers only; ``side_by_side`` says the runs shared the machine at the same time."""
    reference, run = results[0], results[-1]

    def total(result: SoakResult) -> float:
        parts = ("startup", "seed", "flows", "snapshot")
        return round(sum(result.elapsed_seconds.get(k, 0.0) for k in parts), 3)

    ok = (
        comparison.equal
        and not run.callback_conflicts
        and run.dead_letters == 0
        and all(r.retry_bounds.ok for r in results)
    )
    return json.dumps(
        {
            "passed": ok,
            "seed": run.seed,
            "scale": run.scale,
            "records": run.figures()["sourceRecordsTotal"],
            "lost": len(comparison.lost),
            "duplicated": len(comparison.duplicated),
            "extra": len(comparison.extra),
            "changed": len(comparison.changed),
            "callbackConflicts": len(run.callback_conflicts),
            "deadLetters": run.dead_letters,
            "retryBoundsOk": run.retry_bounds.ok,
            "faultsInjected": run.faults_injected,
            "faultsInjectedTotal": run.figures()["faultsInjectedTotal"],
            "retries": {"total": run.retries["total"], "byPeer": run.retries["byPeer"]},
            "rejections": {"faultFree": reference.rejections, "faulted": run.rejections},
            "elapsedSeconds": {"faultFree": total(reference), "faulted": total(run)},
            "runsSideBySide": side_by_side,
            "differences": comparison.details[:20] + comparison.lost[:10] + comparison.extra[:10],
            "runs": [r.figures() for r in results],
            "volatileFieldsIgnored": VOLATILE,
        },
        indent=2,
        default=str,
    )


# ---- a run in another process -------------------------------------------------------------------


def spawn_soak(
    seed: int,
    scale: int,
    faults: bool,
    state_dir: Path,
    out: Path,
    *,
    quiesce: bool = True,
    http_timeout: float = DEFAULT_HTTP_TIMEOUT,
    log_file: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``run_soak`` in a child process that writes its result to ``out`` (JSON); read it
    with ``SoakResult.from_json`` once the process ended with 0. Two runs of a comparison can so
    run side by side: each has its own world, Azurite and process environment."""
    command = [
        sys.executable,
        "-m",
        "sandbox.soak",
        "--seed",
        str(seed),
        "--scale",
        str(scale),
        "--state-dir",
        str(state_dir),
        "--out",
        str(out),
        "--http-timeout",
        f"{http_timeout:g}",
    ]
    command += ["--faults"] if faults else []
    command += [] if quiesce else ["--no-quiesce"]
    stream = open(log_file, "wb") if log_file is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(command, cwd=ROOT, stdout=stream, stderr=stream)
    finally:
        if log_file is not None:
            stream.close()  # type: ignore[union-attr]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sandbox.soak``: one soak run; its result (snapshot included) as JSON."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.soak", description=__doc__)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale", type=int, default=1000)
    parser.add_argument("--faults", action="store_true", help="faults on every peer")
    parser.add_argument("--no-quiesce", action="store_true", help="leave out the final pass")
    parser.add_argument("--http-timeout", type=float, default=DEFAULT_HTTP_TIMEOUT)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="where the JSON result goes")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    result = run_soak(
        args.seed,
        args.scale,
        args.faults,
        args.state_dir,
        quiesce=not args.no_quiesce,
        http_timeout=args.http_timeout,
    )
    args.out.write_text(json.dumps(result.to_json(), default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
