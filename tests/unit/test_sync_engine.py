"""The sync engine and echo filter: direction refusals, conflict rules, echo decisions.
Fakes of the hub's own ports only (rejection recorder, conflict sink, write lookup)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from shared.sync.echo import EchoFilter, HubWrite, values_hash
from shared.sync.engine import DIRECTION_FLOW, Conflict, SyncEngine, Version
from shared.sync.rules import DATAVERSE, SAP, rule

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)


class Recorder:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, str, str, dict[str, Any]]] = []

    def record(self, flow: str, key: str, code: str, reason: str, **details: Any) -> None:
        self.records.append((flow, key, code, reason, details))


class Sink:
    def __init__(self) -> None:
        self.conflicts: list[Conflict] = []

    def log(self, conflict: Conflict) -> None:
        self.conflicts.append(conflict)


class Ledger:
    def __init__(self, writes: dict[tuple[str, str, str], dict[str, Any]]) -> None:
        self.writes = writes

    def last(self, system: str, entity: str, key: str) -> HubWrite | None:
        values = self.writes.get((system, entity, key))
        if values is None:
            return None
        return HubWrite(system, entity, key, values_hash(values), values, T0)


@pytest.fixture
def engine() -> tuple[SyncEngine, Recorder, Sink]:
    recorder, sink = Recorder(), Sink()
    return SyncEngine(recorder, sink), recorder, sink


def test_price_write_from_sales_is_refused_and_recorded_with_both_values(engine):
    sync, recorder, _ = engine
    allowed = sync.permit(
        rule("prices"),
        DATAVERSE,
        SAP,
        "USD-2026|RTU-0100",
        attempted={"amount": "9999"},
        current={"USD": "12500.00"},
    )
    assert allowed is False
    [(flow, key, code, _, details)] = recorder.records
    assert (flow, key, code) == (DIRECTION_FLOW, "prices:USD-2026|RTU-0100", "wrong-direction")
    assert details["attempted"] == {"amount": "9999"}
    assert details["sourceOfTruthValue"] == {"USD": "12500.00"}


def test_allowed_direction_records_nothing(engine):
    sync, recorder, _ = engine
    assert sync.permit(rule("sales_orders"), DATAVERSE, SAP, "4711", attempted={})
    assert recorder.records == []


def test_last_writer_wins_and_the_loser_is_logged_with_both_versions(engine):
    sync, _, sink = engine
    sales = Version(DATAVERSE, {"DeliveryBlockReason": ""}, T0)
    sap = Version(SAP, {"DeliveryBlockReason": "01"}, T0 + dt.timedelta(minutes=1))
    winner = sync.resolve(rule("sales_orders"), "4711", sales, sap)
    assert winner is sap
    [logged] = sink.conflicts
    assert logged.winner is sap and logged.loser is sales and logged.rule == "last-writer"


def test_equal_times_fall_back_to_the_source_of_truth(engine):
    sync, _, _ = engine
    sales = Version(DATAVERSE, {}, T0)
    sap = Version(SAP, {}, T0)
    assert sync.resolve(rule("sales_orders"), "4711", sales, sap) is sap


def test_source_of_truth_rule_ignores_times(engine):
    sync, _, _ = engine
    later_sales = Version(DATAVERSE, {"amount": 1}, T0 + dt.timedelta(days=1))
    sap = Version(SAP, {"amount": 2}, T0)
    assert sync.resolve(rule("prices"), "k", later_sales, sap) is sap


def test_change_matching_the_hubs_recorded_write_is_an_echo():
    ledger = Ledger({(DATAVERSE, "sales_orders", "4711"): {"contoso_confirmed": False}})
    echo = EchoFilter(ledger, lambda: ["hub-user"])
    assert echo.is_echo(DATAVERSE, "sales_orders", "4711", {"contoso_confirmed": False})


def test_change_differing_from_the_hubs_write_is_real_even_if_the_hub_touched_it_last():
    ledger = Ledger({(DATAVERSE, "sales_orders", "4711"): {"contoso_confirmed": False}})
    echo = EchoFilter(ledger, lambda: ["HUB-USER"])
    assert not echo.is_echo(
        DATAVERSE, "sales_orders", "4711", {"contoso_confirmed": True}, modified_by="hub-user"
    )


def test_without_a_ledger_entry_the_integration_identity_decides():
    echo = EchoFilter(Ledger({}), lambda: ["HUB-USER"])
    assert echo.is_echo(DATAVERSE, "prices", "k", {"amount": 1}, modified_by="hub-user")
    assert not echo.is_echo(DATAVERSE, "prices", "k", {"amount": 1}, modified_by="someone")
    assert not echo.is_echo(DATAVERSE, "prices", "k", {"amount": 1})
