"""The fault soak, reduced for ``make test``: every flow over a small generated world, once without
faults and once with every peer answering 10 % 429 (Retry-After), 5 % 503, 2 % timeouts and 1 %
connection resets, half of them after the operation ran. The final states must be equal record for
record, with no lost, duplicated or conflicting record, and every retry within its bounds.

The full run (``tests/verify/test_fault_soak.py``, ``make verify``) does the same over 10,000+
records; ``sandbox/soak.py`` explains the driver, the fault profile and what the snapshot leaves
out as volatile by nature.
"""

from __future__ import annotations

import json

import pytest

from sandbox.soak import SoakResult, compare, run_soak, spawn_soak

pytestmark = pytest.mark.integration

SEED = 7
SCALE = 60
"""60 legacy orders (+ ~140 lines, inventory and customers), 6 SAP orders, 6 quotes."""


def test_faulted_run_reaches_the_same_final_state_as_a_fault_free_run(tmp_path):
    # Given the same seeded world run twice through every flow, side by side: without faults (in
    # a child process) and with faults on every peer (here; run_soak restores the session's
    # environment afterwards)
    out = tmp_path / "fault-free.json"
    child = spawn_soak(
        SEED, SCALE, False, tmp_path / "fault-free", out, quiesce=False, log_file=tmp_path / "log"
    )
    try:
        faulted = run_soak(SEED, SCALE, True, tmp_path / "faulted", quiesce=False)
    finally:
        code = child.wait(timeout=600)
    assert code == 0, (tmp_path / "log").read_text()[-3000:]
    baseline = SoakResult.from_json(json.loads(out.read_text()))
    # Then faults were injected into the hub's traffic and retried, never into the baseline's
    injected = {peer: sum(kinds.values()) for peer, kinds in faulted.faults_injected.items()}
    assert sum(injected.values()) > 0 and injected["dataverse"] > 0
    assert sum(sum(k.values()) for k in baseline.faults_injected.values()) == 0
    assert faulted.retries["total"] > 0
    # and the final Dataverse, SAP, lake, callback and hub state is the baseline's, record for
    # record: nothing lost, nothing extra or duplicated, nothing changed
    comparison = compare(baseline.snapshot, faulted.snapshot)
    assert comparison.equal, comparison.report()
    assert compare(faulted.snapshot, baseline.snapshot).duplicated == []
    # and no callback key was sent with two contents, no message was dead-lettered
    assert faulted.callback_conflicts == []
    assert (baseline.dead_letters, faulted.dead_letters) == (0, 0)
    # and every logical request stayed within its attempts, honoured Retry-After and the cap
    assert faulted.retry_bounds.ok, faulted.retry_bounds.violations[:10]
    assert faulted.retry_bounds.retry_after_waits > 0
    assert baseline.retry_bounds.ok
    # and the soak did what it says: quotes, callbacks, the lake and both SAP batches had work
    records = faulted.records
    assert records["quotesInDataverse"] > 0 and records["callbacks"] > 0
    assert records["mainframeInSilver"] > 0 and records["sapInboundToDataverse"] > 0
    assert records["urgentMessages"] > 0 and records["ordersConfirmedInSales"] > 0
