"""The fault soak's own checks (``sandbox/soak.py``): the snapshot comparison finds every lost,
extra, changed and duplicated record, and the retry-bounds check finds every request with too many
attempts, every wait shorter than its Retry-After and every wait beyond the policy's ceiling. The
soak is only as good as these two, so they are shown to fail on the problems they exist for."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.soak import add_record, business_key, compare, retry_bounds

pytestmark = pytest.mark.unit

POLICY = {"max_attempts": 6, "base_delay": 0.05, "max_delay": 5.0}


def snapshot(rows: dict[str, Any]) -> dict[str, Any]:
    return {"dataverse": {"quotes": rows}}


def attempt(
    request_id: str,
    started: float,
    ended: float,
    status: int,
    fault: str | None = None,
    retry_after: str | None = None,
) -> dict[str, Any]:
    return {
        "method": "GET",
        "path": "/api/data/v9.2/quotes",
        "status": status,
        "fault": fault,
        "retryAfter": retry_after,
        "clientRequestId": request_id,
        "started": started,
        "at": ended,
    }


def test_equal_snapshots_compare_equal():
    # Given two snapshots with the same records
    a = snapshot({"Q1": {"name": "Q1 r1"}, "Q2": {"name": "Q2 r1"}})
    # When they are compared
    result = compare(a, snapshot({"Q1": {"name": "Q1 r1"}, "Q2": {"name": "Q2 r1"}}))
    # Then nothing differs
    assert result.equal
    assert result.report().startswith("lost 0, extra 0, changed 0, duplicated 0")


def test_lost_extra_and_changed_records_are_named_with_their_fields():
    # Given a run that lost Q1, gained Q3 and changed Q2's name
    reference = snapshot({"Q1": {"name": "Q1 r1"}, "Q2": {"name": "Q2 r1"}})
    run = snapshot({"Q2": {"name": "Q2 r2"}, "Q3": {"name": "Q3 r1"}})
    # When it is compared with the reference
    result = compare(reference, run)
    # Then each difference is reported by section, table and key
    assert result.lost == ["dataverse/quotes/Q1"]
    assert result.extra == ["dataverse/quotes/Q3"]
    assert result.changed == ["dataverse/quotes/Q2"]
    assert result.details == ["dataverse/quotes/Q2: name: 'Q2 r1' -> 'Q2 r2'"]
    assert not result.equal


def test_a_key_held_twice_is_a_duplicate_even_with_equal_content():
    # Given a run whose table holds Q1 twice with the same content
    rows: dict[str, Any] = {}
    add_record(rows, "Q1", {"name": "Q1 r1"})
    add_record(rows, "Q1", {"name": "Q1 r1"})
    reference: dict[str, Any] = {}
    add_record(reference, "Q1", {"name": "Q1 r1"})
    # When it is compared with a reference that holds it once
    result = compare(snapshot(reference), snapshot(rows))
    # Then Q1 is a duplicate
    assert result.duplicated == ["dataverse/quotes/Q1"]
    assert not result.equal


def test_requests_within_their_bounds_pass():
    # Given a request throttled once (Retry-After 1 s, waited 1.02 s) and one 503 retried after
    # 0.04 s (the first backoff ceiling is 0.05 s)
    logs = {
        "dataverse": [
            attempt("a", 0.0, 0.01, 429, "429", "1"),
            attempt("a", 1.03, 1.05, 200),
            attempt("b", 2.0, 2.01, 503, "5xx"),
            attempt("b", 2.05, 2.06, 200),
        ]
    }
    # When the bounds are checked
    bounds = retry_bounds(logs, **POLICY)
    # Then there is no violation, and the waits and retries are counted
    assert bounds.ok
    assert bounds.retries() == {"dataverse": 2}
    assert (bounds.waits_checked, bounds.retry_after_waits) == (2, 1)
    assert bounds.most_attempts == {"dataverse": 2}


def test_too_many_attempts_is_a_violation():
    # Given a request sent 8 times (the policy allows 6, plus one after a 401)
    logs = {"sap": [attempt("a", float(n), n + 0.01, 503, "5xx") for n in range(8)]}
    # When the bounds are checked
    bounds = retry_bounds(logs, **POLICY)
    # Then the request is named as over its attempts
    assert [v["kind"] for v in bounds.violations if v["kind"] == "attempts"] == ["attempts"]
    assert not bounds.ok


def test_a_retry_sooner_than_retry_after_is_a_violation():
    # Given a throttled request retried after 0.2 s although the peer said Retry-After: 1
    logs = {"dataverse": [attempt("a", 0.0, 0.01, 429, "429", "1"), attempt("a", 0.21, 0.22, 200)]}
    # When the bounds are checked
    bounds = retry_bounds(logs, **POLICY)
    # Then the early retry is a violation
    assert [v["kind"] for v in bounds.violations] == ["retry-after"]


def test_a_wait_beyond_the_policy_ceiling_is_a_violation():
    # Given a 503 retried after 9 s (the policy's first wait is at most 0.05 s, cap 5 s)
    logs = {"mainframe": [attempt("a", 0.0, 0.01, 503, "5xx"), attempt("a", 9.01, 9.02, 200)]}
    # When the bounds are checked
    bounds = retry_bounds(logs, **POLICY)
    # Then the long wait is a violation
    assert [v["kind"] for v in bounds.violations] == ["cap"]


def test_requests_without_a_client_request_id_are_counted_apart():
    # Given token requests (msal sends no x-ms-client-request-id)
    logs = {"entra": [{**attempt("x", 0.0, 0.1, 200), "clientRequestId": None}] * 3}
    # When the bounds are checked
    bounds = retry_bounds(logs, **POLICY)
    # Then they are ungrouped single attempts, not retries
    assert bounds.ungrouped == {"entra": 3}
    assert bounds.retries() == {"entra": 0}
    assert bounds.ok


def test_rows_without_an_alternate_key_are_told_apart_by_name():
    # Given Dataverse accounts, two of them without an account number (an empty alternate key,
    # which Dataverse allows on any number of rows)
    from sandbox.dataverse.schema import Schema

    accounts = Schema.load().by_set["accounts"]
    rows = [
        {"accountnumber": "C0000001", "name": "Fabrikam"},
        {"accountnumber": None, "name": "Northstar Mechanical"},
        {"accountnumber": None, "name": "Valley University"},
    ]
    # When the snapshot keys them
    keys = [business_key(accounts, row) for row in rows]
    # Then each has its own key: the account number, else the name
    assert keys == ["C0000001", "~Northstar Mechanical", "~Valley University"]


def test_the_systems_own_long_retry_after_is_honoured_up_to_the_cap():
    # Given Dataverse's service protection answering 429 with Retry-After: 30 (no injected fault);
    # the policy waits min(30, cap 5 s)
    logs = {
        "dataverse": [
            attempt("a", 0.0, 0.01, 429, None, "30"),
            attempt("a", 5.02, 5.03, 429, None, "30"),
            attempt("a", 8.0, 8.01, 200),
        ]
    }
    # When the bounds are checked
    bounds = retry_bounds(logs, **POLICY)
    # Then the first wait (5 s, the cap) passes and the second (3 s, short of the cap) does not
    assert [(v["kind"], v["wait"]) for v in bounds.violations] == [("retry-after", 2.97)]
