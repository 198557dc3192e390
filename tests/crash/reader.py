"""Read a sandbox world's state from the test process, without the hub's wiring.

The harness never points ``shared.wiring`` (or ``os.environ``) at the crash worlds: the test
session's own world keeps them. Everything here is built from the world's endpoints: the lake
through ``LakeStorage``/delta-rs, hub state through the Table service, peers through their
``/_sandbox/`` control surface.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests

from shared.adapters.state import DEFAULT_TABLE, WatermarkRecord, WatermarkStore
from shared.adapters.tables import Tables
from shared.lake.storage import LakeConfig, LakeStorage, Layer

if TYPE_CHECKING:
    import polars as pl

    from sandbox.world import World

_SAP_DATE = re.compile(r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$")


def sap_time(value: Any) -> dt.datetime | None:
    """SAP V2 ``/Date(ms[+0000])/`` (or ISO text) as an aware datetime."""
    if value in (None, ""):
        return None
    match = _SAP_DATE.match(str(value))
    if match:
        return dt.datetime.fromtimestamp(int(match.group(1)) / 1000, dt.UTC)
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(dt.UTC)


def row_version(record: dict[str, Any]) -> int:
    """A Dataverse row's version, from its ``@odata.etag`` (``W/"1001954"``)."""
    etag = str(record.get("@odata.etag") or "")
    return int(etag.split('"')[1]) if '"' in etag else int(record.get("versionnumber") or 0)


@dataclass
class WorldReader:
    """Read-only access to one world's lake, state tables and peers."""

    world: World
    http: requests.Session
    storage: LakeStorage = field(init=False)
    tables: Tables = field(init=False)
    _cache: dict[tuple[str, str], list[dict[str, Any]]] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        azurite = self.world.azurite
        assert azurite is not None
        self.storage = LakeStorage(LakeConfig(blob_url=azurite.blob_url, use_emulator=True))
        self.tables = Tables(azurite.table_url, use_emulator=True)

    # ---- peers ---------------------------------------------------------------------------------
    def peer(self, name: str) -> str:
        """The base URL of a peer."""
        return self.world.endpoints()[name]

    def records(self, peer: str, table: str) -> list[dict[str, Any]]:
        """Everything a peer stores in a table (read once per ``frozen()`` block)."""
        if self._cache is not None and (peer, table) in self._cache:
            return self._cache[(peer, table)]
        response = self.http.get(f"{self.peer(peer)}/_sandbox/records/{table}", timeout=300)
        response.raise_for_status()
        rows: list[dict[str, Any]] = response.json()["records"]
        if self._cache is not None:
            self._cache[(peer, table)] = rows
        return rows

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Read each peer table at most once inside the block (nothing runs meanwhile)."""
        self._cache = {}
        try:
            yield
        finally:
            self._cache = None

    # ---- hub state -----------------------------------------------------------------------------
    def entities(self, table: str) -> list[dict[str, Any]]:
        """Every entity of a state table ([] when the table does not exist)."""
        names = {t.name for t in self.tables.service.list_tables()}
        if table not in names:
            return []
        client = self.tables.service.get_table_client(table)
        return [dict(e) for e in client.list_entities()]

    def watermarks(self, job: str | None = None) -> list[WatermarkRecord]:
        """The stored watermarks and delta tokens (of one job)."""
        if DEFAULT_TABLE not in {t.name for t in self.tables.service.list_tables()}:
            return []
        store = WatermarkStore(self.tables.service.get_table_client(DEFAULT_TABLE))
        store._created = True  # reading must not create the table
        return store.list(job)

    # ---- lake ----------------------------------------------------------------------------------
    def silver_tables(self, layer: Layer = "silver") -> list[str]:
        """Names of the Delta tables in a layer (silver by default)."""
        service = self.storage.blob_service
        container = self.storage.container(layer)
        if not any(c.name == container for c in service.list_containers()):
            return []
        blobs = service.get_container_client(container).list_blobs()
        return sorted({b.name.split("/_delta_log/")[0] for b in blobs if "/_delta_log/" in b.name})

    def silver(self, table: str, layer: Layer = "silver") -> pl.DataFrame | None:
        """The latest committed version of a table (None before its first commit)."""
        from shared.lake.delta import read_frame

        return read_frame(self.storage, layer, table)

    def silver_version(self, table: str) -> int | None:
        """The latest committed Delta version of a silver table."""
        from shared.lake.delta import open_table

        found = open_table(self.storage, "silver", table)
        return None if found is None else int(found.version())

    def bronze_blobs(self) -> int:
        """How many bronze pages exist (committed or not to silver)."""
        service = self.storage.blob_service
        container = self.storage.container("bronze")
        if not any(c.name == container for c in service.list_containers()):
            return 0
        return sum(1 for _ in service.get_container_client(container).list_blobs())


def wipe_storage(blob_url: str, table_url: str) -> None:
    """Delete every container and table of an emulator account (a fresh world's storage)."""
    storage = LakeStorage(LakeConfig(blob_url=blob_url, use_emulator=True))
    for container in list(storage.blob_service.list_containers()):
        storage.blob_service.delete_container(container.name)
    tables = Tables(table_url, use_emulator=True)
    for table in list(tables.service.list_tables()):
        tables.service.delete_table(table.name)


def decode_token(link: str) -> int:
    """The change-tracking version a Dataverse delta link stands for (``<version>!<stamp>``)."""
    from urllib.parse import parse_qs, unquote, urlsplit

    query = parse_qs(urlsplit(link).query)
    token = unquote(query["$deltatoken"][0])
    return int(token.split("!", 1)[0])
