"""The lake's scheduled jobs, as the timers run them (``blueprints/lake_jobs.py``).

- ``poll_mainframe``: flows 5a–5c (``shared.services.poll_mainframe``), then a gold rebuild when
  the poll received anything. Gold is rebuilt right after a poll that changed silver so the marts
  built on mainframe data (``order_backlog``, ``integration_health``) are one poll old, not one
  gold period; an idle poll (the common case) costs no rebuild. The poll's watermarks are saved
  before gold is touched, so a failing rebuild never makes the poll re-read anything: it raises
  (the host records it) and the ``gold_rebuild`` timer tries again.
- ``rebuild_gold``: every gold table from silver, on its own schedule, for silver written by other
  jobs (the Dataverse export, quote intake) and as the retry of a failed rebuild. Idempotent: an
  unchanged silver writes nothing.
- ``load_dataverse``: flow 6 (``shared.services.load_dataverse``).
- ``export_dataverse``: flow 7 (``shared.services.dataverse_to_lake``).

Every job returns an object whose ``summary()`` is the one line the timer logs. Failures are never
swallowed: they raise after whatever is safe has been saved.

Nothing heavy at import time: the lake modules load polars/deltalake only when a job runs.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from shared.lake.storage import LakeStorage
from shared.ports import MainframeChangeSource, WatermarkPort
from shared.services.dataverse_to_lake import ChangeSource, ExportResult, export_dataverse
from shared.services.load_dataverse import (
    BulkUpserter,
    LoadResult,
    RejectionRecorder,
    load_dataverse,
)
from shared.services.poll_mainframe import PollResult, poll_mainframe

if TYPE_CHECKING:
    from shared.lake.gold import GoldResult

log = logging.getLogger(__name__)


class DataverseJobsClient(BulkUpserter, ChangeSource, Protocol):
    """The Dataverse client both Dataverse jobs use (``DataverseClient`` satisfies it)."""


@dataclass
class GoldSummary:
    """A gold rebuild's outcome: rows per table and which tables were rewritten."""

    result: GoldResult

    def summary(self) -> str:
        """One line for the timer's log."""
        rows = ", ".join(f"{name}={n}" for name, n in self.result.rows.items())
        written = ", ".join(self.result.written) or "none"
        return f"gold rebuilt: {rows}; rewritten: {written}"


@dataclass
class PollSummary:
    """A mainframe poll and the gold rebuild that followed it (None when nothing arrived)."""

    poll: PollResult
    gold: GoldSummary | None = None

    def summary(self) -> str:
        """One line for the timer's log."""
        entities = ", ".join(
            f"{e.entity}={e.read} (+{e.silver_inserted} ~{e.silver_updated}, "
            f"{e.quarantined} quarantined)"
            for e in self.poll.entities.values()
        )
        gold = self.gold.summary() if self.gold is not None else "gold not rebuilt (no changes)"
        return (
            f"poll_mainframe {self.poll.run_id}: {self.poll.read} record(s) in "
            f"{self.poll.requests} request(s); {entities}; {gold}"
        )


@dataclass
class LakeJobs:
    """The lake jobs and their collaborators (built once by ``shared.wiring``)."""

    mainframe: MainframeChangeSource
    dataverse: DataverseJobsClient
    watermarks: WatermarkPort
    rejections: RejectionRecorder
    storage: LakeStorage
    overlap_seconds: int

    def poll_mainframe(self) -> PollSummary:
        """Flows 5a–5c, then gold when the poll received records."""
        poll = poll_mainframe(
            self.mainframe,
            self.watermarks,
            self.storage,
            overlap=dt.timedelta(seconds=self.overlap_seconds),
        )
        outcome = PollSummary(poll)
        if poll.read:
            # Watermarks are saved: a failing rebuild raises here and costs the poll nothing.
            outcome.gold = self.rebuild_gold()
        return outcome

    def rebuild_gold(self) -> GoldSummary:
        """Every gold table from silver (``GoldBuildError`` after the others when one fails)."""
        from shared.lake.gold import rebuild_gold

        return GoldSummary(rebuild_gold(self.storage))

    def load_dataverse(self) -> LoadResult:
        """Flow 6: changed silver rows into Dataverse."""
        return load_dataverse(self.dataverse, self.watermarks, self.rejections, self.storage)

    def export_dataverse(self) -> ExportResult:
        """Flow 7: Dataverse change tracking into bronze and silver."""
        return export_dataverse(self.dataverse, self.watermarks, self.storage)
