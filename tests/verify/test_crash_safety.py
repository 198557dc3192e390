"""Crash safety (issue 8 part 2; ``make verify``): every job of the pipeline SIGKILLed at seeded
points, re-run, and compared with an uninterrupted run on a fresh world.

The pipeline is flows 5 (mainframe poll), 6 (silver → Dataverse load), 1a (quote push from its
Service Bus messages, then the ``lake_ingest`` job taking the quotes from bronze to silver), 10
(SAP inbound, with orders for some of the pushed quotes), 11 (SAP outbound, after sales users
confirm orders in Dataverse) and 7 (Dataverse → lake), each in a child process with the world's
settings (``tests.crash.harness``). ``CRASH_KILLS`` kill points
(default 12, at least one per job and one of each kind the issue names) are drawn with
``random.Random(CRASH_SEED)`` from the catalogue (``tests.crash.catalogue``): mid-page (a peer holds page n), between the bronze write
and the silver commit, after the silver commit and before the watermark, mid-bulk-upsert (the
peer applied it and the answer is lost, or it never ran), after a watermark moved, mid SAP batch
in both directions, and a quote push killed between Dataverse and the hub's record of it. The
kills are real SIGKILLs, from the harness or from a test-only hook in the child.

At every kill point the watermarks and delta tokens of every job are checked against what is
committed (``tests.crash.checks``). The end state (silver, gold, Dataverse, SAP, hub state) must equal
the uninterrupted run's, normalised for ids, times and run ids (``tests.crash.snapshot``).
Figures: ``out/verify-crash.json``. ``CRASH_SCALE`` sets the generated world's size.
"""

from __future__ import annotations

import json
import os
import random
import time
import traceback
from pathlib import Path

import pytest

from sandbox.datagen import generate
from tests.crash import snapshot
from tests.crash.catalogue import REQUIRED_KINDS, KillPoint, plan
from tests.crash.harness import (
    Config,
    Run,
    context,
    crash_world,
    execute,
    report,
    run_pipeline,
    start_run,
)

pytestmark = pytest.mark.verify

ROOT = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("CRASH_SEED", "20261122"))
SCALE = int(os.environ.get("CRASH_SCALE", "3000"))
KILLS = int(os.environ.get("CRASH_KILLS", "12"))


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    with crash_world(tmp_path_factory.mktemp("crash")) as world:
        yield world


def test_sigkill_at_seeded_points_never_leaves_a_watermark_ahead_and_reruns_converge(worlds):
    # Given a generated world and KILLS kill points over every job, drawn from the seed
    started = time.perf_counter()
    config = Config(seed=SEED, scale=SCALE, quotes=40, outbound_edits=6)
    planned: dict[str, list[KillPoint]] = plan(
        random.Random(SEED),
        context(generate(SEED, SCALE), config),
        config.stages,
        KILLS,
        kinds=REQUIRED_KINDS,
    )
    reference: Run | None = None
    crashed: Run | None = None
    comparison: snapshot.Comparison | None = None
    error = None
    try:
        # When the pipeline runs uninterrupted on a fresh world
        reference, clean = run_pipeline(worlds, config, {}, "reference")
        # and on another fresh world with a SIGKILL at every point, each followed by the checks
        # and a new attempt, the last one uninterrupted
        crashed = start_run(worlds, config, "crashed")
        execute(crashed, planned)
        comparison = snapshot.compare(clean, snapshot.take(crashed.reader))
    except Exception:
        error = traceback.format_exc()
        raise
    finally:
        figures = report(
            config, planned, reference, crashed, comparison, time.perf_counter() - started, error
        )
        out = ROOT / "out"
        out.mkdir(exist_ok=True)
        (out / "verify-crash.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    # Then every planned point was reached and ended its child by SIGKILL
    assert crashed is not None and comparison is not None
    assert len(crashed.kills) == KILLS >= 5
    assert all(k["child"]["killedBySigkill"] for k in crashed.kills)
    assert {k["job"] for k in crashed.kills} == set(config.stages)
    assert {k["kind"] for k in crashed.kills} >= set(REQUIRED_KINDS)
    # and at no kill point (nor at the end) did a watermark or delta token cover uncommitted data
    assert [(k["where"], k["watermarks"]) for k in crashed.kills if k["violations"]] == []
    assert crashed.final["violations"] == 0
    # and the re-runs converged on the uninterrupted run's end state: nothing lost or duplicated
    assert comparison.equal, comparison.examples
    assert comparison.lost == 0 and comparison.duplicated == 0
    assert comparison.rows > 0
