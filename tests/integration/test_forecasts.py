"""POST /api/forecasts end to end in the sandbox world: strict intake over real HTTP, one bronze
page per batch in Azurite, and the ``lake_ingest`` timer MERGEing it into ``silver/forecasts``
with the columns gold's forecast tables read (docs/lake.md, "Silver inputs other sources must
provide")."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import polars as pl
import pytest

from shared import wiring
from shared.lake.delta import read_frame, table_version

pytestmark = pytest.mark.integration


@pytest.fixture
def hub(world, hub_http):
    """The world with a fresh territory hierarchy in Dataverse, which the app (restarted, so
    nothing cached from earlier tests) reads on the first forecast."""
    base = world.endpoints()["dataverse"]
    hub_http.post(f"{base}/_sandbox/reset").raise_for_status()
    tag = uuid.uuid4().hex[:6].upper()
    region, county, city = (str(uuid.uuid4()) for _ in range(3))
    territories = [
        {
            "territoryid": region,
            "contoso_territorycode": f"R-{tag}",
            "name": f"Midwest {tag}",
            "contoso_level": 1,
        },
        {
            "territoryid": county,
            "contoso_territorycode": f"C-{tag}",
            "name": "Sangamon",
            "contoso_level": 2,
            "_contoso_parentterritoryid_value": region,
        },
        {
            "territoryid": city,
            "contoso_territorycode": f"Z-{tag}",
            "name": "Springfield",
            "contoso_level": 3,
            "_contoso_parentterritoryid_value": county,
        },
    ]
    response = hub_http.post(f"{base}/_sandbox/seed", json={"territories": territories})
    assert response.status_code == 200, response.text
    wiring.reset()
    world.tag = tag
    return world


def _rep() -> str:
    return f"rep.{uuid.uuid4().hex[:12]}@contoso.example"


def _batch(rep: str, tag: str, committed: Any = "125000.00") -> dict[str, Any]:
    return {
        "submissions": [
            {
                "salesRep": rep,
                "territory": f"Z-{tag}",
                "month": "2026-06",
                "amount": committed,
                "probability": "0.7",
                "category": "Committed",
            },
            {
                "salesRep": rep,
                "territory": f"midwest {tag.lower()}",
                "month": "2026-07",
                "amount": 40000,
                "probability": 0.3,
                "category": "BestCase",
            },
        ]
    }


def _post(world, http, body: Any, content_type: str = "application/json"):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return http.post(
        f"{world.hub.base_url}/api/forecasts",
        data=data,
        headers={"x-functions-key": world.hub.function_key, "Content-Type": content_type},
    )


def _silver(rep: str) -> pl.DataFrame:
    frame = read_frame(wiring.lake(), "silver", "forecasts")
    assert frame is not None, "silver/forecasts was never written"
    return frame.filter(pl.col("sales_rep") == rep).sort("month")


def _bronze_pages() -> list[str]:
    lake = wiring.lake()
    container = lake.blob_service.get_container_client(lake.container("bronze"))
    return sorted(b.name for b in container.list_blobs(name_starts_with="quotingtool/forecasts/"))


def test_accepted_batch_reaches_silver_with_gold_columns_after_lake_ingest(hub, hub_http):
    # Given a batch of two submissions, one for a City/ZIP territory code and one naming a region
    rep = _rep()
    # When the Quoting Tool posts it
    response = _post(hub, hub_http, _batch(rep, hub.tag))
    # Then the hub answers 202 with the batch id and count
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["accepted"] == 2
    assert accepted["status"] == "accepted"
    assert len(accepted["batchId"]) == 32
    # When the lake job runs
    hub.hub.run_timer("lake_ingest")
    # Then silver/forecasts holds both, typed, with the territory levels resolved at intake
    rows = _silver(rep)
    assert rows.height == 2
    june, july = rows.to_dicts()
    assert june["month"] == dt.date(2026, 6, 1)
    assert june["amount"] == Decimal("125000.00")
    assert june["probability"] == Decimal("0.7000")
    assert june["currency"] == "USD"
    assert (june["region"], june["county"], june["city"], june["zip"]) == (
        f"Midwest {hub.tag}",
        "Sangamon",
        "Springfield",
        None,
    )
    assert june["territory_rule"] == "code"
    assert (july["region"], july["county"], july["territory_rule"]) == (
        f"Midwest {hub.tag}",
        None,
        "region-name",
    )
    assert july["amount"] == Decimal("40000.00")
    assert {june["batch_id"], july["batch_id"]} == {accepted["batchId"]}
    assert june["forecast_id"] != july["forecast_id"]
    # and every column gold reads from silver forecasts exists
    assert {"forecast_id", "month", "amount", "currency", "region", "county", "city", "zip"} <= set(
        rows.columns
    )


def test_replayed_batch_gets_the_same_answer_and_writes_no_new_bronze(hub, hub_http):
    # Given an accepted batch, already in silver
    rep = _rep()
    first = _post(hub, hub_http, _batch(rep, hub.tag)).json()
    hub.hub.run_timer("lake_ingest")
    pages = _bronze_pages()
    version = table_version(wiring.lake(), "silver", "forecasts")
    # When the same batch is sent again, its submissions reordered and numbers spelled otherwise
    again = _batch(rep, hub.tag, committed=125000)
    again["submissions"].reverse()
    replay = _post(hub, hub_http, json.dumps(again, indent=2))
    # Then the answer is the same and bronze holds no new page
    assert replay.status_code == 202
    assert replay.json() == first
    assert _bronze_pages() == pages
    # and the next lake run finds nothing new, so silver gets no new version
    hub.hub.run_timer("lake_ingest")
    assert table_version(wiring.lake(), "silver", "forecasts") == version


def test_later_submission_of_the_same_key_replaces_the_amount_in_silver(hub, hub_http):
    # Given a batch already in silver
    rep = _rep()
    assert _post(hub, hub_http, _batch(rep, hub.tag)).status_code == 202
    hub.hub.run_timer("lake_ingest")
    # When the rep revises June's committed amount (same rep in other case, territory, month,
    # category) in a new batch
    revised = {"submissions": [dict(_batch(rep, hub.tag)["submissions"][0])]}
    revised["submissions"][0].update(salesRep=rep.upper(), amount="130000.50")
    assert _post(hub, hub_http, revised).status_code == 202
    hub.hub.run_timer("lake_ingest")
    # Then silver keeps one row for that forecast, with the later amount
    frame = read_frame(wiring.lake(), "silver", "forecasts")
    assert frame is not None
    june = frame.filter(
        (pl.col("sales_rep").str.to_lowercase() == rep) & (pl.col("month") == dt.date(2026, 6, 1))
    )
    assert june.height == 1
    assert june.item(0, "amount") == Decimal("130000.50")


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"submissions": [', "application/json", 400),
        (b'{"submissions": []}', "text/plain", 415),
        (b'{"submissions": "' + b"x" * (1024 * 1024) + b'"}', "application/json", 413),
        ({"submissions": []}, "application/json", 422),
    ],
    ids=["malformed-400", "content-type-415", "oversized-413", "empty-batch-422"],
)
def test_strict_body_rules_answer_problem_json(hub, hub_http, body, content_type, status):
    # When a body breaks the request rules shared with POST /api/quotes
    response = _post(hub, hub_http, body, content_type)
    # Then it is refused with the matching problem document
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.json()["status"] == status


def test_duplicate_submission_in_one_batch_is_422_at_the_repeat(hub, hub_http):
    # Given a batch naming the same (salesRep, territory, month, category) twice
    body = _batch(_rep(), hub.tag)
    body["submissions"].append(dict(body["submissions"][0], amount="1.00"))
    # When it is posted
    response = _post(hub, hub_http, body)
    # Then the whole batch is refused, pointing at the repeat
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [(e["pointer"], e["code"]) for e in errors] == [
        ("/submissions/2", "submission_duplicate")
    ]
