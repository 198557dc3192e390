"""Reconciliation against the sandbox: after a clean run of flow 7 (Dataverse → lake) the
accounts agree; a change and a deletion made by hand in Dataverse are reported exactly."""

from __future__ import annotations

import uuid

import pytest

from shared import wiring

pytestmark = pytest.mark.integration


@pytest.fixture
def accounts(world, hub_http):
    """Dataverse reset and seeded with fresh accounts, exported to the lake by flow 7."""
    e = world.endpoints()
    hub_http.post(f"{e['dataverse']}/_sandbox/reset").raise_for_status()
    rows = [
        {
            "accountid": str(uuid.uuid4()),
            "accountnumber": f"R{uuid.uuid4().hex[:8].upper()}",
            "name": f"Reconcile {i}",
            "address1_city": "Seattle",
            "address1_postalcode": "98101",
        }
        for i in range(5)
    ]
    response = hub_http.post(f"{e['dataverse']}/_sandbox/seed", json={"accounts": rows})
    assert response.status_code == 200, response.text
    world.hub.run_timer("dataverse_to_lake")
    return rows


def test_clean_run_reports_no_drift_then_exactly_the_hand_made_drift(accounts):
    # Given the accounts exported by a clean flow-7 run
    # When reconciliation runs
    clean = wiring.reconciler().run(["accounts"])
    # Then it reports zero drift, with equal counts on both sides
    assert clean.drift == [], clean.summary()
    (pair,) = clean.pairs
    assert pair.left_count == pair.right_count >= len(accounts)

    # Given one account changed by hand in Dataverse and another deleted
    changed, deleted = accounts[0], accounts[1]
    client = wiring.dataverse()
    client.upsert(
        "accounts", uuid.UUID(changed["accountid"]), {"name": "Renamed by hand"}, if_match="*"
    )
    assert client.delete("accounts", uuid.UUID(deleted["accountid"]))
    # When reconciliation runs again (before flow 7 catches up)
    report = wiring.reconciler().run(["accounts"])
    # Then it reports exactly that drift, by key
    assert report.drift_of("accounts") == {
        ("dataverse~lake", changed["accountid"], "different"),
        ("dataverse~lake", deleted["accountid"], "missing_left"),
    }
    different = next(d for d in report.drift if d.kind == "different")
    assert "Renamed by hand" in different.detail
    # And the drift is appended to gold/reconciliation for that run
    from shared.lake.delta import read_frame

    frame = read_frame(wiring.lake(), "gold", "reconciliation")
    assert frame is not None
    run = frame.filter(frame["run_at"] == report.run_at)
    assert sorted(run["key"].to_list()) == sorted([changed["accountid"], deleted["accountid"]])
