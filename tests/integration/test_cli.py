"""The operator CLI runs the app's own jobs against the sandbox and manages watermarks."""

from __future__ import annotations

import io
import json

import pytest

from sandbox.datagen import generate, to_jsonable
from shared.cli import main
from shared.services.poll_mainframe import JOB

pytestmark = pytest.mark.integration


def run(*argv: str) -> str:
    out = io.StringIO()
    assert main(list(argv), out=out) == 0
    return out.getvalue()


@pytest.fixture
def mainframe_seeded(world, hub_http):
    mainframe = world.endpoints()["mainframe"]
    hub_http.post(f"{mainframe}/_sandbox/reset").raise_for_status()
    data = generate(11, 120)
    for name, table in data.mainframe_seed().items():
        rows = [to_jsonable(r) for r in table]
        hub_http.post(f"{mainframe}/_sandbox/seed", json={name: rows}).raise_for_status()
    for entity in ("customers", "orders", "orderlines", "inventory"):
        run("watermarks", "reset", JOB, entity)
    return data


def _read(summary: dict) -> int:
    return sum(e["read"] for e in summary["poll"]["entities"].values())


def test_jobs_list_names_every_job():
    assert run("jobs", "list").split() == [
        "mainframe-poll",
        "gold-rebuild",
        "dataverse-load",
        "dataverse-export",
        "quote-qualification",
        "lake-ingest",
        "sap-inbound",
        "sap-outbound",
        "reconcile",
    ]


def test_running_the_mainframe_poll_now_advances_its_watermarks(world, mainframe_seeded):
    # When an operator runs the poll from the CLI
    result = json.loads(run("jobs", "run", "mainframe-poll"))
    # Then it read the generated records, rebuilt gold, and every entity's watermark exists
    seeded = sum(len(list(t)) for t in mainframe_seeded.mainframe_seed().values())
    assert _read(result) == seeded
    assert result["gold"] is not None
    marks = {m["entity"]: m["value"] for m in json.loads(run("watermarks", "list", "--job", JOB))}
    assert set(marks) == {"customers", "orders", "orderlines", "inventory"}
    # and a second run right after reads nothing new
    again = json.loads(run("jobs", "run", "mainframe-poll"))
    assert _read(again) == 0
    assert again["gold"] is None


def test_watermark_reset_with_a_value_sets_it(world):
    run("watermarks", "reset", JOB, "orders", "--value", "2026-01-01T00:00:00Z")
    marks = {m["entity"]: m["value"] for m in json.loads(run("watermarks", "list", "--job", JOB))}
    assert marks["orders"] == "2026-01-01T00:00:00Z"


def test_backfill_rereads_from_a_point_in_time_without_doubling_silver(world, mainframe_seeded):
    run("jobs", "run", "mainframe-poll")
    before = json.loads(run("counts"))["silver"]
    before.pop("ingestion_runs")  # the run log grows by design: one row per run
    # When the orders are backfilled from long ago
    result = json.loads(
        run("backfill", "mainframe", "--since", "2000-01-01T00:00:00Z", "--entity", "orders")
    )
    # Then the whole file was read again, and silver holds the same number of rows
    assert result["orders"]["read"] == len(list(mainframe_seeded.mainframe_seed()["orders"]))
    after = json.loads(run("counts"))["silver"]
    after.pop("ingestion_runs")
    assert after == before


def test_counts_lists_silver_and_gold_tables(world, mainframe_seeded):
    run("jobs", "run", "mainframe-poll")
    run("gold", "rebuild")
    counts = json.loads(run("counts"))
    assert counts["silver"]["legacy_orders"] > 0
    assert "order_backlog" in counts["gold"]


def test_rejections_are_queryable(world):
    from shared import wiring

    wiring.rejections().record("cli-test", "K-1", "unknown-account", "no account K-1")
    listed = json.loads(run("rejections", "--flow", "cli-test"))
    assert [(r["key"], r["code"]) for r in listed] == [("K-1", "unknown-account")]
