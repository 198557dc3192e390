"""A qualification callback whose delivery failed is sent again with the same content (found by
the fault soak's review of what a lost answer does): the Quoting Tool accepted the first POST, lost
every answer, and the next timer run must be a harmless duplicate under the same Idempotency-Key,
never a 409 "key already used with a different body" (the tool's contract, sandbox/quoting_tool.py)
that would block the qualification flow for good."""

from __future__ import annotations

import uuid

import pytest

from shared.errors import TransientError
from tests.integration.test_quote_flow import (
    post,
    qualify_in_dataverse,
    quote,
    status,
)

pytestmark = pytest.mark.integration


def test_callback_resent_after_lost_answers_is_a_duplicate_not_a_conflict(flow, hub_http):
    # Given a pushed quote that a sales manager qualified in Dynamics 365
    quote_id = f"Q-{uuid.uuid4().hex[:10]}"
    post(flow, hub_http, quote(quote_id))
    flow.hub.dispatcher.run_until_idle()
    qualify_in_dataverse(flow, hub_http, status(flow, hub_http, quote_id)["dataverseId"])
    tool = flow.endpoints()["quotingTool"]
    # and a Quoting Tool that records callbacks but loses every answer (503 after it ran)
    hub_http.put(f"{tool}/_sandbox/faults", json={"rate5xx": 1.0, "faultPhase": "after"})
    try:
        # When the qualification timer runs, its delivery fails after every retry
        with pytest.raises(TransientError):
            flow.hub.run_timer("quote_qualification")
    finally:
        hub_http.put(f"{tool}/_sandbox/faults", json={})
    # and the next run sends it again
    flow.hub.run_timer("quote_qualification")
    # Then the tool holds the callback once, never refused it as a conflicting reuse of its key,
    # and the quote is qualified
    records = hub_http.get(f"{tool}/_sandbox/records/callbacks").json()["records"]
    mine = [c for c in records if c["body"]["quoteId"] == quote_id]
    assert len(mine) == 1
    refused = hub_http.get(f"{tool}/_sandbox/records/rejections").json()["records"]
    assert [r for r in refused if r["idempotencyKey"] == mine[0]["idempotencyKey"]] == []
    assert status(flow, hub_http, quote_id)["status"] == "qualified"
