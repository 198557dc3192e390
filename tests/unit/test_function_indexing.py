"""Proof that the Functions host will index the app: the real Python worker indexes it.

Every function is listed here with its trigger and binding facts, so adding, renaming or
re-binding a function without updating this table fails the suite.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.indexing.checks import ROOT, index, sample_settings, setting_problems

pytestmark = pytest.mark.unit
APPS = Path(__file__).resolve().parent.parent / "indexing" / "apps"

# name -> expected trigger facts
EXPECTED: dict[str, dict[str, object]] = {
    "health": {
        "type": "httpTrigger",
        "route": "health",
        "methods": ["GET"],
        "authLevel": "ANONYMOUS",
    },
    "quote_intake": {
        "type": "httpTrigger",
        "route": "quotes",
        "methods": ["POST"],
        "authLevel": "FUNCTION",
    },
    "quote_status": {
        "type": "httpTrigger",
        "route": "quotes/{quoteId}",
        "methods": ["GET"],
        "authLevel": "FUNCTION",
    },
    "quote_push": {
        "type": "serviceBusTrigger",
        "queueName": "%QUOTES_QUEUE_NAME%",
        "connection": "ServiceBusConnection",
    },
    "quote_qualification": {"type": "timerTrigger", "schedule": "%DATAVERSE_CHANGES_SCHEDULE%"},
    "openapi": {
        "type": "httpTrigger",
        "route": "openapi.json",
        "methods": ["GET"],
        "authLevel": "ANONYMOUS",
    },
    "pricing": {
        "type": "httpTrigger",
        "route": "pricing",
        "methods": ["GET"],
        "authLevel": "FUNCTION",
    },
    "product_availability": {
        "type": "httpTrigger",
        "route": "products/{sku}/availability",
        "methods": ["GET"],
        "authLevel": "FUNCTION",
    },
    "forecast_intake": {
        "type": "httpTrigger",
        "route": "forecasts",
        "methods": ["POST"],
        "authLevel": "FUNCTION",
    },
    "lake_ingest": {"type": "timerTrigger", "schedule": "%LAKE_INGEST_SCHEDULE%"},
    "archive_import": {
        "type": "httpTrigger",
        "route": "quotes/archive",
        "methods": ["POST"],
        "authLevel": "FUNCTION",
    },
    "mainframe_poll": {"type": "timerTrigger", "schedule": "%MAINFRAME_POLL_SCHEDULE%"},
    "gold_rebuild": {"type": "timerTrigger", "schedule": "%GOLD_REBUILD_SCHEDULE%"},
    "dataverse_load": {"type": "timerTrigger", "schedule": "%DATAVERSE_LOAD_SCHEDULE%"},
    "dataverse_to_lake": {"type": "timerTrigger", "schedule": "%DATAVERSE_EXPORT_SCHEDULE%"},
    "sap_inbound": {"type": "timerTrigger", "schedule": "%SAP_INBOUND_SCHEDULE%"},
    "sap_outbound": {"type": "timerTrigger", "schedule": "%SAP_OUTBOUND_SCHEDULE%"},
    "urgent_sap_to_dataverse": {
        "type": "serviceBusTrigger",
        "queueName": "%URGENT_SAP_TO_DATAVERSE_QUEUE_NAME%",
        "connection": "ServiceBusConnection",
        "isSessionsEnabled": True,
    },
    "urgent_dataverse_to_sap": {
        "type": "serviceBusTrigger",
        "queueName": "%URGENT_DATAVERSE_TO_SAP_QUEUE_NAME%",
        "connection": "ServiceBusConnection",
        "isSessionsEnabled": True,
    },
    "reconcile": {"type": "timerTrigger", "schedule": "%RECONCILE_SCHEDULE%"},
    "dashboard": {
        "type": "httpTrigger",
        "route": "dashboard",
        "methods": ["GET"],
        "authLevel": "FUNCTION",
    },
    "dashboard_snapshot": {"type": "timerTrigger", "schedule": "%DASHBOARD_SNAPSHOT_SCHEDULE%"},
}


@pytest.fixture(scope="module")
def indexed() -> dict[str, dict[str, object]]:
    result = index(ROOT)
    assert "error" not in result, result.get("error")
    return {f["name"]: f for f in result["functions"]}


def _trigger(function: dict[str, object]) -> dict[str, object]:
    bindings = function["bindings"]
    assert isinstance(bindings, list)
    return next(b for b in bindings if str(b["type"]).endswith("Trigger"))


def test_worker_indexes_exactly_the_expected_functions(indexed):
    # Given the real worker's loader over function_app.py
    # Then it indexes every function we ship and nothing else
    assert sorted(indexed) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_function_has_its_expected_trigger_binding(indexed, name):
    # Given the indexed metadata of one function
    trigger = _trigger(indexed[name])
    # Then its trigger type, route, methods, authLevel, schedule, queue and connection are as declared
    for key, value in EXPECTED[name].items():
        actual = trigger.get(key)
        if key == "methods":
            actual = sorted(str(m).upper() for m in actual or [])
            value = sorted(value)  # type: ignore[arg-type]
        assert actual == value, f"{name}.{key}"


def test_every_binding_setting_exists_in_the_sample_settings(indexed):
    # Given the sample settings a developer copies to local.settings.json
    settings = sample_settings()
    # Then every referenced connection and %Setting% exists and every schedule is valid NCRONTAB
    assert setting_problems(list(indexed.values()), settings) == []


def test_indexer_catches_a_parameter_that_does_not_match_its_binding():
    # Given an app whose output parameter is named differently from its binding
    result = index(APPS / "bad_param")
    # Then the worker refuses to load it, naming the parameter
    assert "FunctionLoadError" in result["error"]
    assert "out" in result["error"]


def test_schedule_check_catches_a_five_field_cron():
    # Given an app whose schedule setting holds a Unix (5-field) cron expression
    result = index(APPS / "bad_schedule")
    problems = setting_problems(result["functions"], {"BAD_SCHEDULE": "0 */5 * * *"})
    # Then the check names the function and the schedule
    assert len(problems) == 1
    assert "tick.timer" in problems[0]
    assert "6 fields" in problems[0]


def test_schedule_check_accepts_a_valid_six_field_schedule():
    result = index(APPS / "bad_schedule")
    assert setting_problems(result["functions"], {"BAD_SCHEDULE": "0 */5 * * * *"}) == []


def test_settings_check_catches_a_missing_connection_setting():
    # Given a Service Bus trigger whose connection names a setting that does not exist
    result = index(APPS / "missing_connection")
    problems = setting_problems(result["functions"], {"ServiceBusConnection": "x"})
    # Then the check reports the missing connection setting
    assert problems == ["on_order.msg: connection setting OrdersBus is not defined"]
    # and an identity-based connection (OrdersBus__fullyQualifiedNamespace) satisfies it
    fixed = {"OrdersBus__fullyQualifiedNamespace": "ns.servicebus.windows.net"}
    assert setting_problems(result["functions"], fixed) == []
