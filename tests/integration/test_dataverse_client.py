"""The hub's DataverseClient against the sandbox Dataverse environment (real HTTP, no mocks)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from shared.adapters.dataverse import (
    DataverseClient,
    DataverseError,
    DeltaTokenExpired,
    PreconditionFailed,
    UpsertRow,
    bind,
    odata_literal,
)
from shared.errors import PermanentError
from shared.http import HttpClient, make_session

pytestmark = pytest.mark.integration


def quote_rows(n: int, bad: set[int] = frozenset(), prefix: str = "Q") -> list[UpsertRow]:
    """Quotes keyed by contoso_quotingtoolid; a 'bad' row has a name over the 300-char limit."""
    return [
        UpsertRow(
            {"contoso_quotingtoolid": f"{prefix}-{i:05d}"},
            {
                "name": "x" * 301 if i in bad else f"Quote {i}",
                "totalamount": Decimal(i) + Decimal("0.0001"),
            },
        )
        for i in range(n)
    ]


def test_single_row_round_trip_with_a_quote_in_the_key(dataverse_client: DataverseClient, dv):
    # Given a key with a single quote (OData doubles it; the client escapes every key)
    key = {"accountnumber": "O'Brien & Sons"}
    # When it is upserted, read, conditionally updated and deleted
    created = dataverse_client.upsert(
        "accounts", key, {"name": "O'Brien"}, return_representation=True
    )
    assert created.created is True
    row = dataverse_client.get("accounts", key)
    assert row is not None and row["accountnumber"] == "O'Brien & Sons"
    dataverse_client.upsert("accounts", key, {"name": "Renamed"}, if_match=row["@odata.etag"])
    with pytest.raises(PreconditionFailed) as stale:
        dataverse_client.upsert("accounts", key, {"name": "Stale"}, if_match=row["@odata.etag"])
    # Then each step did what it says, errors carry Dataverse's code, and nothing leaks the token
    assert stale.value.code == "0x80060882"
    assert "Bearer" not in str(stale.value) and "?" not in str(stale.value)
    assert dataverse_client.get("accounts", key, select=["name"])["name"] == "Renamed"
    assert dataverse_client.delete("accounts", key) is True
    assert dataverse_client.delete("accounts", key) is False
    assert dataverse_client.get("accounts", key) is None


def test_create_only_and_update_only_upserts(dataverse_client: DataverseClient):
    key = {"contoso_territorycode": "W-1"}
    with pytest.raises(DataverseError) as missing:
        dataverse_client.upsert("territories", key, {"name": "West"}, if_match="*")
    assert missing.value.status == 404
    dataverse_client.upsert("territories", key, {"name": "West"}, if_none_match=True)
    with pytest.raises(PreconditionFailed) as exists:
        dataverse_client.upsert("territories", key, {"name": "Again"}, if_none_match=True)
    assert exists.value.code == "0x80040237"


def test_create_returns_the_new_id_and_lookups_bind_by_key(dataverse_client: DataverseClient):
    account_id = dataverse_client.create("accounts", {"name": "Parent", "accountnumber": "P/1"})
    uuid.UUID(account_id)
    dataverse_client.upsert(
        "contacts",
        {"contoso_contactnumber": "C-1"},
        {
            "lastname": "Child",
            "parentcustomerid_account@odata.bind": bind("accounts", {"accountnumber": "P/1"}),
        },
    )
    contact = dataverse_client.get("contacts", {"contoso_contactnumber": "C-1"})
    assert contact is not None and contact["_parentcustomerid_value"] == account_id


def test_query_filters_with_escaped_literals_and_follows_next_links(
    dataverse_client: DataverseClient, dv
):
    dv.seed({"uoms": [{"name": f"Unit {i:02d}"} for i in range(23)] + [{"name": "it's"}]})
    rows = list(dataverse_client.query("uoms", select=["name"], orderby="name", page_size=5))
    assert len(rows) == 24
    apostrophe = "it's"
    quoted = list(dataverse_client.query("uoms", filter=f"name eq {odata_literal(apostrophe)}"))
    assert [r["name"] for r in quoted] == ["it's"]
    # a filter value cannot smuggle in another query option
    sneaky = list(dataverse_client.query("uoms", filter=f"name eq {odata_literal('x&$top=1')}"))
    assert sneaky == []


def test_ids_by_resolves_many_keys_in_one_query_per_fifty_case_insensitively(
    dataverse_client: DataverseClient, dv
):
    # Given 120 accounts, one with a quote in its number
    numbers = [f"AC-{i:03d}" for i in range(119)] + ["O'Neil"]
    dv.seed({"accounts": [{"accountnumber": n, "name": n} for n in numbers]})
    stored = {r["accountnumber"]: r["accountid"] for r in dv.records("accounts")}
    before = len(dv.requests())
    # When 110 of them, one in other case, a missing number and a blank are looked up
    wanted = [*numbers[:109], "o'neil", "NO-SUCH", ""]
    ids = dataverse_client.ids_by("accounts", "accountnumber", wanted, id_column="accountid")
    # Then each existing one maps to its id under the value asked for, the rest are absent
    assert ids == {**{n: stored[n] for n in numbers[:109]}, "o'neil": stored["O'Neil"]}
    # and it took one query per 50 distinct values, not one GET per value
    queries = dv.requests()[before:]
    assert [q["method"] for q in queries] == ["GET"] * 3
    assert all(q["path"].startswith("/api/data/v9.2/accounts?") for q in queries)


def test_4xx_maps_to_permanent_error_with_the_dataverse_code(dataverse_client: DataverseClient):
    with pytest.raises(PermanentError) as bad:
        dataverse_client.upsert("accounts", {"accountnumber": "E-1"}, {"name": "x" * 161})
    assert isinstance(bad.value, DataverseError)
    assert bad.value.code == "0x80044331"
    assert bad.value.status == 400
    assert "exceeded the maximum allowed length" in bad.value.dataverse_message


def test_keys_dataverse_cannot_address_in_a_url_are_read_by_filter_and_written_in_batch(
    dataverse_client: DataverseClient, dv
):
    # define-alternate-keys-portal.md: / # < > * % & : \ ? + in key data break GET and PATCH
    key = {"accountnumber": "50% off: A+B?"}
    dataverse_client.upsert("accounts", key, {"name": "Odd key"})
    row = dataverse_client.get("accounts", key, select=["name", "accountnumber"])
    assert row is not None and row["name"] == "Odd key"
    assert dataverse_client.delete("accounts", key) is True
    assert dv.records("accounts") == []


def test_bulk_of_2500_rows_with_bad_rows_lands_every_good_row_and_reports_each_bad_one(
    dataverse_client: DataverseClient, dv
):
    # Given 2,500 quotes, three of them invalid, on a table that supports UpsertMultiple
    bad = {7, 1500, 1999}
    rows = quote_rows(2500, bad)
    # When they are loaded
    result = dataverse_client.upsert_many("quotes", "quote", rows)
    # Then every good row landed (the rolled-back chunks were replayed through $batch)...
    assert result.landed == 2497
    assert len(dv.records("quotes")) == 2497
    # ...and each bad row is a permanent rejection with Dataverse's own code and message
    assert sorted(r.index for r in result.rejected) == sorted(bad)
    for rejected in result.rejected:
        assert isinstance(rejected.error, DataverseError)
        assert rejected.error.code == "0x80044331"
        assert "'name' attribute of the 'quote' entity" in rejected.error.dataverse_message
    assert result.used_bulk
    # three bulk requests, two of which rolled back and were replayed once each
    assert (result.bulk_requests, result.batch_requests) == (3, 2)


def test_bulk_falls_back_to_batch_on_a_table_without_upsertmultiple_and_remembers(
    dataverse_client: DataverseClient, dv
):
    # Given accounts, which this environment declares without UpsertMultiple (0x80040800)
    rows = [
        UpsertRow({"accountnumber": f"A-{i:04d}"}, {"name": f"Account {i}"}) for i in range(1200)
    ]
    # When loaded twice
    first = dataverse_client.upsert_many("accounts", "account", rows)
    second = dataverse_client.upsert_many("accounts", "account", rows)
    # Then all rows land through $batch; the second load does not try the bulk message again
    assert first.landed == second.landed == 1200
    assert not first.used_bulk
    assert (first.bulk_requests, first.batch_requests) == (1, 2)
    assert (second.bulk_requests, second.batch_requests) == (0, 2)
    assert len(dv.records("accounts")) == 1200


def test_bulk_support_can_be_discovered_from_sdkmessagefilters(dataverse, tls, bearer, sleeps, dv):
    client = DataverseClient(
        HttpClient(
            make_session(tls.ca_path), token=lambda _: bearer(dataverse.base_url), sleep=sleeps
        ),
        dataverse.base_url,
        discover_bulk_support=True,
    )
    assert client.supports_message("quote", "UpsertMultiple")
    assert not client.supports_message("goal", "UpsertMultiple")
    rows = [UpsertRow({"contoso_goalkey": f"G|{i}"}, {"title": f"Goal {i}"}) for i in range(10)]
    result = client.upsert_many("goals", "goal", rows)
    assert result.landed == 10
    assert result.bulk_requests == 0


def test_429_with_retry_after_is_honoured_and_counted(
    dataverse_client: DataverseClient, dv, sleeps
):
    # Given an environment that throttles about a third of the requests with Retry-After: 1
    dv.faults(rate429=0.3, retryAfterSeconds=1, seed=3)
    rows = quote_rows(3000, prefix="T")
    # When a load runs in chunks of 500
    dataverse_client.bulk_chunk_size = 500
    result = dataverse_client.upsert_many("quotes", "quote", rows)
    # Then HttpClient waited exactly what Dataverse asked for, every row landed, and the 429s are counted
    assert result.throttled > 0
    assert sleeps.waits and set(sleeps.waits) == {1.0}
    assert result.landed == 3000
    assert result.requests >= 6 + result.throttled


def test_requests_per_thousand_rows_stay_at_or_under_two_on_the_happy_path(
    dataverse_client: DataverseClient,
):
    # bulk tables: one UpsertMultiple per 1,000 rows
    bulk = dataverse_client.upsert_many("quotes", "quote", quote_rows(3000, prefix="H"))
    assert bulk.landed == 3000
    assert bulk.requests_per_1000_rows <= 2
    # tables without bulk messages: one $batch per 1,000 rows (plus one probe the first time)
    rows = [UpsertRow({"productnumber": f"SKU-{i}"}, {"name": f"Product {i}"}) for i in range(2000)]
    batch = dataverse_client.upsert_many("products", "product", rows)
    assert batch.landed == 2000
    assert batch.requests_per_1000_rows <= 2


def test_dop_hint_is_learned_from_responses(dataverse_client: DataverseClient, dv):
    dv.settings(dopHint=3)
    dataverse_client.whoami()
    assert dataverse_client.dop_hint == 3


def test_changes_first_sync_then_deltas_and_expired_token(dataverse_client: DataverseClient, dv):
    # use-change-tracking-synchronize-data-external-systems.md
    dv.seed({"accounts": [{"name": f"N{i}", "accountnumber": f"N-{i}"} for i in range(12)]})
    dataverse_client.page_size = 5
    first = dataverse_client.changes("accounts", ["name", "accountnumber"])
    assert len(first.upserted) == 12 and first.deleted == []
    assert first.delta_link
    dataverse_client.upsert("accounts", {"accountnumber": "N-1"}, {"name": "changed"})
    dropped = dataverse_client.get("accounts", {"accountnumber": "N-2"})["accountid"]
    dataverse_client.delete("accounts", {"accountnumber": "N-2"})
    delta = dataverse_client.changes("accounts", ["name"], first.delta_link)
    assert [r["name"] for r in delta.upserted] == ["changed"]
    assert delta.deleted == [dropped]
    dv.http.post(f"{dv.peer.base_url}/_sandbox/expire-delta-tokens").raise_for_status()
    with pytest.raises(DeltaTokenExpired) as expired:
        dataverse_client.changes("accounts", ["name"], delta.delta_link)
    assert expired.value.code == "0x80044352"


def test_changes_on_a_table_without_change_tracking_is_a_permanent_error(
    dataverse_client: DataverseClient,
):
    with pytest.raises(DataverseError) as refused:
        dataverse_client.changes("contacts", ["lastname"])
    assert refused.value.code == "0x80072491"
