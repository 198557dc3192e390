"""Flow 7 snapshots against the Dataverse peer and Azurite.

Change tracking is a per-table setting (``EntityMetadata.ChangeTrackingEnabled``; Microsoft
Learn, "Use change tracking to synchronize data with external systems"), and
docs/dataverse-schema.md leaves it off for ``territories`` and ``contoso_postalcodes``. So each
export reads those tables in full with a plain query and reconciles silver by ``versionnumber``,
the row version Dataverse moves on every update (the value behind ``@odata.etag``;
docs/dataverse-schema.md, system columns)."""

from __future__ import annotations

import uuid

import pytest

from shared.lake.bronze import BronzeReader
from shared.lake.delta import read_frame, table_version
from shared.services.dataverse_to_lake import RESYNC_REASON, export_dataverse

pytestmark = pytest.mark.integration

REGION, COUNTY, CITY = (str(uuid.UUID(int=i)) for i in (101, 102, 103))


def _seed(dv) -> None:
    dv.seed(
        {
            "territories": [
                {
                    "territoryid": REGION,
                    "contoso_territorycode": "R-W",
                    "name": "West",
                    "contoso_level": 1,
                },
                {
                    "territoryid": COUNTY,
                    "contoso_territorycode": "C-KING",
                    "name": "King",
                    "contoso_level": 2,
                    "contoso_ParentTerritoryId@odata.bind": f"/territories({REGION})",
                },
                {
                    "territoryid": CITY,
                    "contoso_territorycode": "Z-98101",
                    "name": "Seattle",
                    "contoso_level": 3,
                    "contoso_ParentTerritoryId@odata.bind": f"/territories({COUNTY})",
                },
            ]
        }
    )


def _export(dataverse_client, watermarks, lake):
    return export_dataverse(dataverse_client, watermarks, lake, entity_sets=["territories"])


def _pages(lake) -> list[str]:
    return BronzeReader(lake).list_pages("dataverse", "territories")


def test_the_territory_snapshot_lands_changes_only_and_soft_deletes_what_is_gone(
    dv, dataverse_client, watermarks, lake
):
    # Given three territories in Dynamics 365
    _seed(dv)
    # When the hub exports them for the first time
    first = _export(dataverse_client, watermarks, lake).tables["territories"]
    # Then silver holds the hierarchy: code, name, level and parent of each
    silver = read_frame(lake, "silver", "dataverse_territories").sort("contoso_level")
    assert silver.select(
        "contoso_territorycode", "name", "contoso_level", "contoso_parentterritoryid"
    ).rows() == [
        ("R-W", "West", 1, None),
        ("C-KING", "King", 2, REGION),
        ("Z-98101", "Seattle", 3, COUNTY),
    ]
    assert (first.full_read, first.upserted, first.silver_inserted) == (True, 3, 3)
    # and no delta token is kept for it (silver is the snapshot's state)
    assert watermarks.read("dataverse-export", "territories") == (None, None)
    pages, version = _pages(lake), table_version(lake, "silver", "dataverse_territories")

    # When the hub exports again with nothing changed
    again = _export(dataverse_client, watermarks, lake).tables["territories"]
    # Then it wrote no bronze page and no silver version
    assert again.received == 0
    assert _pages(lake) == pages
    assert table_version(lake, "silver", "dataverse_territories") == version

    # When the county is renamed and the city deleted in Dynamics 365, and the hub exports
    dv.request("PATCH", f"territories({COUNTY})", json={"name": "King County"}).raise_for_status()
    dv.request("DELETE", f"territories({CITY})").raise_for_status()
    third = _export(dataverse_client, watermarks, lake).tables["territories"]
    # Then only the renamed row and the inferred deletion reached bronze and silver
    assert (third.upserted, third.resync_deleted) == (1, 1)
    assert (third.silver_updated, third.silver_unchanged) == (2, 0)
    silver = read_frame(lake, "silver", "dataverse_territories")
    by_id = {r["territoryid"]: r for r in silver.iter_rows(named=True)}
    assert by_id[COUNTY]["name"] == "King County"
    assert by_id[CITY]["is_deleted"] is True
    assert by_id[CITY]["name"] == "Seattle"
    assert by_id[REGION]["is_deleted"] is False
    reader = BronzeReader(lake)
    inferred = [
        record
        for name in _pages(lake)
        for record in reader.read_page(name).records
        if record.get("reason") == RESYNC_REASON
    ]
    assert [r["id"] for r in inferred] == [CITY]


ZIP_SEATTLE, ZIP_BELLEVUE = (str(uuid.UUID(int=i)) for i in (201, 202))


def _postal_code(row_id: str, zip_code: str, city: str, territory: str) -> dict[str, str]:
    # As sandbox/datagen seeds them: the ZIP as contoso_name, bound to its City/ZIP territory.
    return {
        "contoso_postalcodeid": row_id,
        "contoso_name": zip_code,
        "contoso_city": city,
        "contoso_county": "King",
        "contoso_stateorprovince": "WA",
        "contoso_TerritoryId@odata.bind": f"/territories({territory})",
    }


def test_the_postal_code_map_is_a_snapshot_on_the_same_path_as_territories(
    dv, dataverse_client, watermarks, lake
):
    # Given the hierarchy and two ZIP codes in Dynamics 365: Seattle's, and Bellevue's filed
    # under the county (contoso_postalcodes is not change-tracked either: docs/dataverse-schema.md)
    _seed(dv)
    dv.seed(
        {
            "contoso_postalcodes": [
                _postal_code(ZIP_SEATTLE, "98101", "Seattle", CITY),
                _postal_code(ZIP_BELLEVUE, "98004", "Bellevue", COUNTY),
            ]
        }
    )
    sets = ["territories", "contoso_postalcodes"]
    # When the hub exports both snapshots
    first = export_dataverse(dataverse_client, watermarks, lake, entity_sets=sets)
    # Then silver maps each ZIP to its territory, read like the hierarchy: in full, no token
    postal = first.tables["contoso_postalcodes"]
    assert (postal.full_read, postal.upserted, postal.silver_inserted) == (True, 2, 2)
    assert postal.silver_table == "dataverse_contoso_postalcodes"
    silver = read_frame(lake, "silver", "dataverse_contoso_postalcodes").sort("contoso_name")
    assert silver.select(
        "contoso_name", "contoso_city", "contoso_stateorprovince", "contoso_territoryid"
    ).rows() == [("98004", "Bellevue", "WA", COUNTY), ("98101", "Seattle", "WA", CITY)]
    assert watermarks.read("dataverse-export", "contoso_postalcodes") == (None, None)
    pages = BronzeReader(lake).list_pages("dataverse", "contoso_postalcodes")
    version = table_version(lake, "silver", "dataverse_contoso_postalcodes")

    # When nothing changed and the hub exports again
    again = export_dataverse(dataverse_client, watermarks, lake, entity_sets=sets)
    # Then neither snapshot wrote anything
    assert [t.received for t in again.tables.values()] == [0, 0]
    assert BronzeReader(lake).list_pages("dataverse", "contoso_postalcodes") == pages
    assert table_version(lake, "silver", "dataverse_contoso_postalcodes") == version

    # When Sales moves Bellevue's ZIP to the Seattle territory and drops Seattle's ZIP
    dv.request(
        "PATCH",
        f"contoso_postalcodes({ZIP_BELLEVUE})",
        json={"contoso_TerritoryId@odata.bind": f"/territories({CITY})"},
    ).raise_for_status()
    dv.request("DELETE", f"contoso_postalcodes({ZIP_SEATTLE})").raise_for_status()
    third = export_dataverse(dataverse_client, watermarks, lake, entity_sets=sets)
    # Then only the moved ZIP and the inferred deletion reached silver; territories are unchanged
    postal = third.tables["contoso_postalcodes"]
    assert (postal.upserted, postal.resync_deleted) == (1, 1)
    assert third.tables["territories"].received == 0
    by_id = {
        r["contoso_postalcodeid"]: r
        for r in read_frame(lake, "silver", "dataverse_contoso_postalcodes").iter_rows(named=True)
    }
    assert (by_id[ZIP_BELLEVUE]["contoso_territoryid"], by_id[ZIP_BELLEVUE]["is_deleted"]) == (
        CITY,
        False,
    )
    assert (by_id[ZIP_SEATTLE]["contoso_name"], by_id[ZIP_SEATTLE]["is_deleted"]) == ("98101", True)
