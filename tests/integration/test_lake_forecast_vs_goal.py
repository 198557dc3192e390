"""Gold ``forecast_vs_goal`` on real Azurite from Dynamics 365 goals: territories and goals seeded
in the Dataverse peer and exported by flow 7 (``dataverse_territories`` snapshot,
``dataverse_goals`` by change tracking), forecasts accepted by the real intake (territory resolved
against the same hierarchy) and MERGEd into ``silver/forecasts`` by the lake ingest job.
Definitions: docs/lake.md, "forecast_vs_goal"."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest

from shared.adapters.tables import Tables
from shared.lake.bronze import BronzeWriter
from shared.lake.gold import read_gold, rebuild_gold
from shared.lake.specs import FORECASTS
from shared.models.forecast import ForecastBatch
from shared.services.dataverse_to_lake import export_dataverse
from shared.services.forecasts import ForecastIntake, IntakeMarkers, ingest_quoting_tool
from shared.services.territory import TerritoryMap

pytestmark = pytest.mark.integration

JUNE, JULY = "2026-06", "2026-07"


@pytest.fixture
def intake_markers(azurite):
    """The ``hubintake`` table on a prefix of its own, dropped after the test."""
    tables = Tables(azurite.table_url, use_emulator=True, prefix=f"t{uuid.uuid4().hex[:10]}")
    yield IntakeMarkers(tables.table("hubintake"))
    tables.service.delete_table(f"{tables.prefix}hubintake")


class World:
    """A Midwest region (Sangamon county: Springfield, Peoria) and a West region, with goals of
    every level for June and July that add up the hierarchy as Dynamics 365 holds them."""

    def __init__(self, dv) -> None:
        self.tag = uuid.uuid4().hex[:6].upper()
        self.midwest, self.west = f"Midwest {self.tag}", f"West {self.tag}"
        self.ids = {code: str(uuid.uuid4()) for code in ("R1", "C1", "Z1", "Z2", "R2")}
        territories = [
            self._territory("R1", self.midwest, 1, None),
            self._territory("C1", "Sangamon", 2, "R1"),
            self._territory("Z1", "Springfield", 3, "C1"),
            self._territory("Z2", "Peoria", 3, "C1"),
            self._territory("R2", self.west, 1, None),
        ]
        targets = {
            JUNE: {"Z1": 60000, "Z2": 40000, "C1": 100000, "R1": 100000, "R2": 250000},
            JULY: {"Z1": 70000, "Z2": 30000, "C1": 100000, "R1": 100000, "R2": 90000},
        }
        goals = [
            self._goal(code, month, target)
            for month, by_code in targets.items()
            for code, target in by_code.items()
        ]
        dv.seed({"territories": territories, "goals": goals})

    def code(self, short: str) -> str:
        return f"{short}-{self.tag}"

    def _territory(self, short: str, name: str, level: int, parent: str | None) -> dict[str, Any]:
        row: dict[str, Any] = {
            "territoryid": self.ids[short],
            "contoso_territorycode": self.code(short),
            "name": name,
            "contoso_level": level,
        }
        if parent is not None:
            row["contoso_ParentTerritoryId@odata.bind"] = f"/territories({self.ids[parent]})"
        return row

    def _goal(self, short: str, month: str, target: int) -> dict[str, Any]:
        # As sandbox/datagen seeds goals: keyed {territorycode}|{YYYY-MM}, bound to the territory.
        year, number = (int(p) for p in month.split("-"))
        start = dt.date(year, number, 1)
        end = (start + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
        return {
            "contoso_goalkey": f"{self.code(short)}|{month}",
            "title": f"{self.code(short)} revenue {month}",
            "targetmoney": target,
            "contoso_month": month,
            "goalstartdate": start.isoformat(),
            "goalenddate": end.isoformat(),
            "contoso_TerritoryId@odata.bind": f"/territories({self.ids[short]})",
        }


def _hierarchy(client) -> TerritoryMap:
    # What shared.wiring hands forecast intake: the hierarchy read from Dataverse.
    return TerritoryMap.from_dataverse(
        client.query(
            "territories",
            select=[
                "territoryid",
                "contoso_territorycode",
                "name",
                "contoso_level",
                "_contoso_parentterritoryid_value",
            ],
        ),
        [],
    )


def _submission(rep: str, territory: str, amount: str, category: str) -> dict[str, Any]:
    return {
        "salesRep": rep,
        "territory": territory,
        "month": JUNE,
        "amount": amount,
        "probability": "0.5",
        "category": category,
    }


def _forecast_vs_goal(lake) -> list[tuple[Any, ...]]:
    rebuild_gold(lake, tables=["forecast_vs_goal"])
    table = read_gold(lake, "forecast_vs_goal")
    assert table is not None
    return table.select(
        "region",
        "county",
        "city",
        "month",
        "currency",
        "forecast_amount",
        "goal_amount",
        "variance_amount",
        "attainment",
    ).rows()


def test_dynamics_goals_land_on_the_rows_of_the_forecasts_of_their_territory(
    dv, dataverse_client, lake, watermarks, intake_markers
):
    # Given the hierarchy and its goals in Dynamics 365, exported to the lake by flow 7
    world = World(dv)
    export_dataverse(dataverse_client, watermarks, lake, entity_sets=["territories", "goals"])
    # and June forecasts accepted by intake: two reps for Springfield's code (54,000 in all),
    # one for Peoria's, and one naming the West region by name in another case
    batch = ForecastBatch.model_validate(
        {
            "submissions": [
                _submission("ann@contoso.example", world.code("Z1"), "30000.00", "Committed"),
                _submission("bob@contoso.example", world.code("Z1").lower(), "24000", "BestCase"),
                _submission("ann@contoso.example", world.code("Z2"), "50000.00", "Committed"),
                _submission("cy@contoso.example", world.west.upper(), "200000", "Pipeline"),
            ]
        }
    )
    intake = ForecastIntake(
        BronzeWriter(lake), intake_markers, lambda: _hierarchy(dataverse_client)
    )
    intake.accept(batch)
    ingest_quoting_tool(lake, watermarks, specs=[FORECASTS])
    # When gold forecast_vs_goal is built
    rows = _forecast_vs_goal(lake)
    # Then each forecast row carries its own territory's June goal: Springfield 54,000 of 60,000,
    # Peoria 50,000 of 40,000, West (a region-level forecast) 200,000 of 250,000. Sangamon's and
    # Midwest's goals restate the cities' (100,000 each) and are not added again, and July,
    # which nobody forecast, is outside the comparison
    june = dt.date(2026, 6, 1)
    assert rows == [
        (world.midwest, "Sangamon", "Peoria", june, "USD", *_money(50000, 40000, 10000), 1.25),
        (world.midwest, "Sangamon", "Springfield", june, "USD", *_money(54000, 60000, -6000), 0.9),
        (world.west, None, None, june, "USD", *_money(200000, 250000, -50000), 0.8),
    ]
    midwest_goal = sum(r[6] for r in rows if r[0] == world.midwest)
    assert midwest_goal == Decimal("100000.00")

    # When Sales raises Springfield's June goal in Dynamics 365 and flow 7 and gold run again
    goal = next(
        g for g in dv.records("goals") if g["contoso_goalkey"] == f"{world.code('Z1')}|{JUNE}"
    )
    dv.request("PATCH", f"goals({goal['goalid']})", json={"targetmoney": 72000}).raise_for_status()
    export_dataverse(dataverse_client, watermarks, lake, entity_sets=["territories", "goals"])
    rows = _forecast_vs_goal(lake)
    # Then Springfield's row compares the forecast with the new goal: 54,000 / 72,000 = 0.75
    springfield = next(r for r in rows if r[2] == "Springfield")
    assert springfield[5:] == (*_money(54000, 72000, -18000), 0.75)


def _money(*values: int) -> tuple[Decimal, ...]:
    return tuple(Decimal(v).quantize(Decimal("0.01")) for v in values)
