"""Flow 7 (Dataverse change tracking → bronze → silver) against the Dataverse peer and Azurite.

Change tracking as documented in ``use-change-tracking-synchronize-data-external-systems.md``
(MicrosoftDocs/powerapps-docs, ``developer/data-platform/``): ``Prefer: odata.track-changes`` gives
every row and a ``@odata.deltaLink``; the delta link returns rows changed since, in full, and
deletions as ``{"@odata.context": ".../$metadata#<set>/$deletedEntity", "id": ..., "reason":
"deleted"}``; an expired token is 0x80044352 "Version stamp associated with the client has
expired. Please perform a full sync." (the peer's ``POST /_sandbox/expire-delta-tokens``).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest

from shared.lake.bronze import BronzeReader
from shared.lake.delta import read_frame, table_version
from shared.lake.storage import LAYERS
from shared.services.dataverse_to_lake import (
    EXPORT_TABLES,
    JOB,
    RESYNC_REASON,
    ExportIncomplete,
    export_dataverse,
)

pytestmark = pytest.mark.integration

ACCOUNTS = {str(uuid.UUID(int=i)): f"C000000{i}" for i in (1, 2, 3)}
PRODUCT_RTU, PRODUCT_AHU = str(uuid.UUID(int=11)), str(uuid.UUID(int=12))


def seed(dv) -> None:
    """A few rows in most change-tracked tables (the others stay empty). Rows with fractional
    money go through the Web API, which reads JSON numbers as exact decimals."""
    first = next(iter(ACCOUNTS))
    dv.seed(
        {
            "accounts": [
                {"accountid": i, "accountnumber": n, "name": f"Account {n}"}
                for i, n in ACCOUNTS.items()
            ],
            "salesorders": [
                {
                    "contoso_sapsalesorder": "0000012345",
                    "name": "SO 12345",
                    "contoso_confirmed": True,
                    "requestdeliveryby": "2026-12-01",
                }
            ],
            "goals": [
                {
                    "contoso_goalkey": "R-W|2026-12",
                    "title": "West December",
                    "targetmoney": 250000,
                    "contoso_month": "2026-12",
                }
            ],
        }
    )
    created = [
        (
            "products",
            {
                "productid": PRODUCT_RTU,
                "productnumber": "RTU-0100",
                "name": "Rooftop unit",
                "contoso_productfamily": 100000000,
                "price": 12500.5,
            },
        ),
        (
            "products",
            {
                "productid": PRODUCT_AHU,
                "productnumber": "AHU-0300",
                "name": "Air handler",
                "contoso_productfamily": 100000002,
                "price": 8400,
            },
        ),
        (
            "quotes",
            {
                "contoso_quotingtoolid": "Q-1",
                "name": "Q-1 r0",
                "totalamount": 1234.56,
                "customerid_account@odata.bind": f"/accounts({first})",
            },
        ),
        (
            "salesorderdetails",
            {"contoso_saporderitemkey": "0000012345|10", "quantity": 2.5, "priceperunit": 100},
        ),
    ]
    for entity_set, row in created:
        response = dv.request("POST", entity_set, json=row)
        assert response.status_code == 204, response.text


# Most tests look at two tables (and one empty one): each table with rows costs a Delta table.
SOME = ["accounts", "products", "opportunities"]


def export(dataverse_client, watermarks, lake, **options: Any):
    return export_dataverse(dataverse_client, watermarks, lake, **options)


def silver(lake, entity_set: str):
    return read_frame(lake, "silver", f"dataverse_{entity_set}")


def lake_files(lake) -> list[str]:
    names = []
    for layer in LAYERS:
        client = lake.blob_service.get_container_client(lake.container(layer))
        names += [f"{layer}/{b.name}" for b in client.list_blobs()]
    return sorted(names)


def silver_versions(lake) -> dict[str, int | None]:
    tables = [t.spec.table for t in EXPORT_TABLES] + ["quarantine", "ingestion_runs"]
    return {t: table_version(lake, "silver", t) for t in tables}


def test_first_export_lands_every_row_in_bronze_and_silver(dv, dataverse_client, watermarks, lake):
    # Given Dataverse holding rows in most change-tracked tables
    seed(dv)
    # When the hub exports for the first time
    result = export(dataverse_client, watermarks, lake)
    # Then every row is in its silver table, keyed by its primary id, values typed
    accounts = silver(lake, "accounts")
    assert sorted(accounts["accountid"].to_list()) == sorted(ACCOUNTS)
    assert dict(zip(accounts["accountid"], accounts["accountnumber"], strict=True)) == ACCOUNTS
    products = silver(lake, "products").sort("productnumber")
    assert products["product_family"].to_list() == ["AHU", "RTU"]
    assert products["price"].to_list() == [Decimal("8400.00"), Decimal("12500.50")]
    quote = silver(lake, "quotes").row(0, named=True)
    assert (quote["totalamount"], quote["customerid"]) == (Decimal("1234.56"), next(iter(ACCOUNTS)))
    assert silver(lake, "salesorders")["contoso_confirmed"].to_list() == [True]
    assert silver(lake, "salesorderdetails")["quantity"].to_list() == [Decimal("2.50000")]
    # and who made each version is recorded (echo suppression reads it), matching Dataverse
    for table in ("accounts", "products"):
        peer = {r[f"{table[:-1]}id"]: r["_modifiedby_value"] for r in dv.records(table)}
        frame = silver(lake, table)
        assert dict(zip(frame[f"{table[:-1]}id"], frame["modified_by"], strict=True)) == peer
    # and bronze holds the pages of the tables that had rows, as received
    pages = BronzeReader(lake).list_pages("dataverse", "accounts")
    assert len(pages) == 1
    assert result.tables["accounts"].upserted == 3
    assert result.tables["opportunities"].received == 0
    assert BronzeReader(lake).list_pages("dataverse", "opportunities") == []
    # and every table has a delta token, saved after its commit
    for table in EXPORT_TABLES:
        assert "$deltatoken=" in str(watermarks.read(JOB, table.entity_set).value)


def test_a_change_and_a_delete_land_as_an_update_and_a_soft_delete(
    dv, dataverse_client, watermarks, lake
):
    # Given a first export
    seed(dv)
    export(dataverse_client, watermarks, lake, entity_sets=SOME)
    renamed = next(iter(ACCOUNTS))
    # When one account is renamed and one product deleted in Dataverse, and the hub exports
    dv.request("PATCH", f"accounts({renamed})", json={"name": "Renamed"}).raise_for_status()
    dv.request("DELETE", f"products({PRODUCT_AHU})").raise_for_status()
    result = export(dataverse_client, watermarks, lake, entity_sets=SOME)
    # Then the delta carried exactly those two changes
    assert (result.tables["accounts"].upserted, result.tables["accounts"].deleted) == (1, 0)
    assert (result.tables["products"].upserted, result.tables["products"].deleted) == (0, 1)
    assert (result.tables["accounts"].silver_updated, result.tables["products"].silver_updated) == (
        1,
        1,
    )
    # and silver shows the new name, and the product soft-deleted with its last known values
    accounts = silver(lake, "accounts")
    assert accounts.height == 3
    assert accounts.filter(accounts["accountid"] == renamed)["name"].to_list() == ["Renamed"]
    products = silver(lake, "products")
    gone = products.filter(products["productid"] == PRODUCT_AHU).row(0, named=True)
    assert gone["is_deleted"] is True
    assert gone["deleted_at"] is not None
    assert gone["productnumber"] == "AHU-0300"
    assert products.filter(~products["is_deleted"])["productid"].to_list() == [PRODUCT_RTU]


def test_an_unchanged_export_writes_nothing(dv, dataverse_client, watermarks, lake):
    # Given a first export
    seed(dv)
    export(dataverse_client, watermarks, lake, entity_sets=SOME)
    files, versions = lake_files(lake), silver_versions(lake)
    # When the hub exports again with nothing changed in Dataverse
    result = export(dataverse_client, watermarks, lake, entity_sets=SOME)
    # Then it asked once per table and wrote no blob and no Delta version
    assert result.received == 0
    assert {t.requests for t in result.tables.values()} == {1}
    assert lake_files(lake) == files
    assert silver_versions(lake) == versions


def test_two_changes_within_one_second_land_in_order(dv, dataverse_client, watermarks, lake):
    # Given a first export
    seed(dv)
    export(dataverse_client, watermarks, lake, entity_sets=["accounts"])
    account = next(iter(ACCOUNTS))
    # When an account changes, is exported, and changes again straight away (modifiedon has
    # whole seconds, so both versions may carry the same stamp), and the hub exports again
    for name in ("First", "Second"):
        dv.request("PATCH", f"accounts({account})", json={"name": name}).raise_for_status()
        export(dataverse_client, watermarks, lake, entity_sets=["accounts"])
    # Then silver holds the later version
    accounts = silver(lake, "accounts")
    assert accounts.filter(accounts["accountid"] == account)["name"].to_list() == ["Second"]


def test_an_expired_token_resyncs_without_duplicates_and_soft_deletes_what_is_gone(
    dv, dataverse_client, watermarks, lake
):
    # Given a first export, then (while the hub is away) one account renamed, one deleted,
    # and every delta token expired
    seed(dv)
    export(dataverse_client, watermarks, lake, entity_sets=SOME)
    renamed, deleted, _ = ACCOUNTS
    dv.request("PATCH", f"accounts({renamed})", json={"name": "Renamed"}).raise_for_status()
    dv.request("DELETE", f"accounts({deleted})").raise_for_status()
    dv.http.post(f"{dv.peer.base_url}/_sandbox/expire-delta-tokens").raise_for_status()
    # When the hub exports
    result = export(dataverse_client, watermarks, lake, entity_sets=SOME)
    # Then each table was read in full again, the MERGE absorbed the re-read (one row per key)
    assert all(t.resync for t in result.tables.values())
    accounts = silver(lake, "accounts")
    assert sorted(accounts["accountid"].to_list()) == sorted(ACCOUNTS)
    assert accounts.filter(accounts["accountid"] == renamed)["name"].to_list() == ["Renamed"]
    # and the account missing from the full read is soft-deleted, its deletion recorded in bronze
    gone = accounts.filter(accounts["accountid"] == deleted).row(0, named=True)
    assert gone["is_deleted"] is True
    assert result.tables["accounts"].resync_deleted == 1
    reader = BronzeReader(lake)
    inferred = [
        record
        for name in reader.list_pages("dataverse", "accounts")
        for record in reader.read_page(name).records
        if record.get("reason") == RESYNC_REASON
    ]
    assert [r["id"] for r in inferred] == [deleted]
    # and the products, unchanged, are all still live
    assert silver(lake, "products")["is_deleted"].to_list() == [False, False]
    # and the new tokens work: the next export reads nothing
    assert export(dataverse_client, watermarks, lake, entity_sets=SOME).received == 0


def test_a_failing_table_does_not_stop_the_others_and_keeps_its_token(
    dv, dataverse_client, watermarks, lake
):
    # Given a first export, then a new account, and the accounts token replaced by one
    # Dataverse refuses outright (a table that lost change tracking answers 400 like this)
    seed(dv)
    export(dataverse_client, watermarks, lake, entity_sets=SOME)
    dv.seed({"accounts": [{"accountnumber": "C0000009", "name": "New"}]})
    dv.seed({"products": [{"productnumber": "CHL-0200", "name": "Chiller"}]})
    stored = watermarks.read(JOB, "accounts")
    broken = stored.value.replace("$deltatoken=", "$filter=name eq 'x'&$deltatoken=")
    watermarks.advance(JOB, "accounts", broken, stored.etag)
    # When the hub exports
    with pytest.raises(ExportIncomplete) as caught:
        export(dataverse_client, watermarks, lake, entity_sets=SOME)
    # Then the failure names the accounts table, whose token did not move
    assert list(caught.value.result.failed) == ["accounts"]
    assert watermarks.read(JOB, "accounts").value == broken
    # and the other tables were exported
    assert caught.value.result.tables["products"].upserted == 1
    assert "CHL-0200" in silver(lake, "products")["productnumber"].to_list()
