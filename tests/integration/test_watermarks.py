"""Watermarks on real Azurite Tables: ETag-guarded advances, one winner per race.

Azure Tables optimistic concurrency: Update Entity with If-Match fails with 412 Precondition
Failed when the ETag is stale; Insert Entity of an existing key fails with 409 Conflict
(learn.microsoft.com/rest/api/storageservices/update-entity2, .../insert-entity).
"""

from __future__ import annotations

import threading

import pytest

from shared.adapters.state import Watermark, WatermarkConflictError

pytestmark = pytest.mark.integration


def test_an_unset_watermark_reads_as_none_and_is_created_by_the_first_advance(watermarks):
    # Given a watermark that was never set
    assert watermarks.read("poll_mainframe", "orders") == Watermark(None, None)
    # When it is advanced with no ETag (create-only)
    etag = watermarks.advance("poll_mainframe", "orders", "2026-05-04T09:00:00Z", None)
    # Then it reads back with that value and ETag
    value, read_etag = watermarks.read("poll_mainframe", "orders")
    assert value == "2026-05-04T09:00:00Z"
    assert read_etag == etag


def test_an_advance_with_the_current_etag_moves_it(watermarks):
    # Given a watermark read with its ETag
    watermarks.advance("poll_mainframe", "orders", "v1", None)
    _, etag = watermarks.read("poll_mainframe", "orders")
    # When it is advanced with that ETag
    new_etag = watermarks.advance("poll_mainframe", "orders", "v2", etag, run_id="run-2")
    # Then the value moved and the ETag changed
    assert watermarks.read("poll_mainframe", "orders") == Watermark("v2", new_etag)
    assert new_etag != etag


def test_of_two_runs_advancing_from_the_same_read_only_one_wins(watermarks):
    # Given two overlapping runs that both read the same watermark
    watermarks.advance("poll_mainframe", "orders", "v1", None)
    _, etag = watermarks.read("poll_mainframe", "orders")
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def advance(run):
        barrier.wait()
        try:
            outcomes[run] = watermarks.advance("poll_mainframe", "orders", run, etag, run_id=run)
        except WatermarkConflictError as exc:
            outcomes[run] = exc

    threads = [threading.Thread(target=advance, args=(r,)) for r in ("run-a", "run-b")]
    # When both advance at the same time with that ETag
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one advanced and the other got a clear conflict
    conflicts = [r for r, o in outcomes.items() if isinstance(o, WatermarkConflictError)]
    winners = [r for r, o in outcomes.items() if isinstance(o, str)]
    assert len(conflicts) == 1 and len(winners) == 1
    assert "advanced by another run" in str(outcomes[conflicts[0]])
    assert watermarks.read("poll_mainframe", "orders").value == winners[0]


def test_two_first_advances_cannot_both_create_it(watermarks):
    # Given two runs that both saw no watermark
    watermarks.advance("poll_mainframe", "customers", "v1", None)
    # When the second also creates it
    # Then it gets the conflict instead of overwriting
    with pytest.raises(WatermarkConflictError):
        watermarks.advance("poll_mainframe", "customers", "v2", None)
    assert watermarks.read("poll_mainframe", "customers").value == "v1"


def test_operators_can_list_and_reset_watermarks(watermarks):
    # Given watermarks of two jobs
    watermarks.advance("poll_mainframe", "orders", "o1", None, run_id="run-1")
    watermarks.advance("poll_mainframe", "customers", "c1", None, run_id="run-1")
    watermarks.advance("dataverse_changes", "accounts", "token-1", None)
    # When they are listed
    listed = watermarks.list("poll_mainframe")
    # Then one job's are shown in order with their metadata
    assert [(r.entity, r.value, r.run_id) for r in listed] == [
        ("customers", "c1", "run-1"),
        ("orders", "o1", "run-1"),
    ]
    assert all(r.updated_at is not None for r in listed)
    assert len(watermarks.list()) == 3
    # When one is reset to a value and another forgotten
    watermarks.reset("poll_mainframe", "orders", "o0")
    watermarks.reset("poll_mainframe", "customers")
    # Then the override holds and the forgotten one reads as unset (next run reads everything)
    assert watermarks.read("poll_mainframe", "orders").value == "o0"
    assert watermarks.read("poll_mainframe", "customers") == Watermark(None, None)


def test_names_that_are_not_plain_keys_are_refused(watermarks):
    # Given a job or entity name with characters Azure Tables forbids in keys
    # Then it is refused before any request
    with pytest.raises(ValueError):
        watermarks.read("poll/mainframe", "orders")
    with pytest.raises(ValueError):
        watermarks.advance("poll_mainframe", "orders#1", "v", None)
