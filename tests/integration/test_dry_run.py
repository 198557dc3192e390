"""Initial sync in dry-run mode against a generated world seeded into the sandbox peers: it must
report exactly the duplicates and orphans ``sandbox.datagen`` planted, and write nothing."""

from __future__ import annotations

import json

import pytest

from sandbox.datagen import ContosoData, generate, to_jsonable
from shared import wiring

pytestmark = pytest.mark.integration

SEED, SCALE = 7, 300


@pytest.fixture(scope="module")
def data() -> ContosoData:
    return generate(SEED, SCALE)


@pytest.fixture
def seeded(world, hub_http, data):
    """SAP, Dataverse and the mainframe reset, then seeded with the generated world's masters."""
    e = world.endpoints()
    plan = {
        "sap": ("A_Customer", "A_Product", "A_SalesOrder"),
        "dataverse": ("accounts", "products"),
        "mainframe": ("customers", "orders", "orderlines"),
    }
    projections = {
        "sap": data.sap_seed(),
        "dataverse": data.dataverse_seed(),
        "mainframe": data.mainframe_seed(),
    }
    for peer, tables in plan.items():
        hub_http.post(f"{e[peer]}/_sandbox/reset").raise_for_status()
        for table in tables:
            rows = [to_jsonable(r) for r in projections[peer][table]]
            response = hub_http.post(f"{e[peer]}/_sandbox/seed", json={table: rows})
            assert response.status_code == 200, f"{peer}/{table}: {response.text[:300]}"
    return world


def _count(world, http, peer: str, table: str) -> int:
    response = http.get(f"{world.endpoints()[peer]}/_sandbox/records/{table}")
    assert response.status_code == 200, response.text
    return len(response.json()["records"])


def test_accounts_dry_run_reports_exactly_the_planted_duplicates_and_orphans(
    seeded, hub_http, data, tmp_path
):
    before = {t: _count(seeded, hub_http, "dataverse", t) for t in ("accounts", "products")}
    # Given a generated world in the peers
    # When the accounts map is dry-run
    report = wiring.dry_run(tmp_path).run("accounts")
    # Then the duplicates per system are exactly the planted ones (by business key) ...
    planted = data.planted
    assert report.duplicate_keys("mainframe") == set(
        planted.get("mainframe.customers", "duplicate_key")
    )
    assert report.duplicate_keys("sap") == set(planted.get("sap.A_Customer", "duplicate_customer"))
    assert report.duplicate_keys("dataverse") == set(
        planted.get("dataverse.accounts", "duplicate_account")
    )
    # ... the orphans are exactly the SAP orders planted with an unknown sold-to party ...
    assert report.orphan_keys("sap.A_SalesOrder") == set(
        planted.get("sap.A_SalesOrder", "missing_customer")
    )
    # ... every clean account is coupled, none created, and the report is on disk
    assert report.create == []
    assert len(report.couple) == data.counts.accounts - len(report.duplicates["mainframe"])
    written = json.loads((tmp_path / "dry-run-accounts.json").read_text())
    assert written["map"] == "accounts"
    assert sorted(d["key"] for d in written["duplicates"]["sap"]) == sorted(
        planted.get("sap.A_Customer", "duplicate_customer")
    )
    # And nothing was written to Dataverse
    after = {t: _count(seeded, hub_http, "dataverse", t) for t in ("accounts", "products")}
    assert after == before


def test_products_dry_run_couples_every_product_and_reports_no_problems(seeded, data, tmp_path):
    # Given products that agree on both sides (the generator plants no product problems)
    # When the products map is dry-run
    report = wiring.dry_run(tmp_path).run("products")
    # Then every product would be coupled, nothing created, duplicated or unmapped
    assert len(report.couple) == data.counts.products
    assert report.create == [] and report.duplicates == {} and report.unmapped == []


def test_dry_run_appends_its_findings_to_the_gold_table(seeded, tmp_path):
    from shared.lake.delta import read_frame

    # Given a dry run of the accounts map
    report = wiring.dry_run(tmp_path).run("accounts")
    # Then gold/initial_sync_dry_run holds one row per finding of that run
    frame = read_frame(wiring.lake(), "gold", "initial_sync_dry_run")
    assert frame is not None
    run = frame.filter(frame["run_at"] == report.run_at)
    assert run.height == len(report.rows())
    duplicates = run.filter(run["action"] == "duplicate")
    assert set(duplicates["system"].to_list()) == {"mainframe", "sap", "dataverse"}


def test_legacy_orders_dry_run_reports_exactly_the_planted_orphans_and_bad_records(
    seeded, data, tmp_path
):
    # Given the generated mainframe order file, with its planted problems
    planted = data.planted

    def keys(entity: str, *kinds: str) -> set[str]:
        found: set[str] = set()
        for kind in kinds:
            found |= {k if isinstance(k, str) else "|".join(k) for k in planted.get(entity, kind)}
        return found

    # When the legacy-orders map is dry-run
    report = wiring.dry_run(tmp_path).run("legacy_orders")
    # Then orders of unknown customers and lines of unknown orders are the orphans ...
    assert report.orphan_keys("mainframe.orders") == keys("mainframe.orders", "missing_customer")
    assert report.orphan_keys("mainframe.orderlines") == keys(
        "mainframe.orderlines", "missing_order"
    )
    # ... records whose dates or amounts don't parse are unmapped, each with its reason ...
    unmapped = {(u["system"], u["key"]) for u in report.unmapped}
    assert unmapped == {
        ("mainframe.orders", k)
        for k in keys("mainframe.orders", "invalid_date", "non_numeric_amount")
    } | {
        ("mainframe.orderlines", k)
        for k in keys("mainframe.orderlines", "non_positive_quantity", "non_numeric_amount")
    }
    assert all(u["reason"] for u in report.unmapped)
    # ... and every other order would be created (Dataverse holds none yet)
    bad = keys("mainframe.orders", "missing_customer", "invalid_date", "non_numeric_amount")
    assert len(report.create) == data.counts.legacy_orders - len(bad)
