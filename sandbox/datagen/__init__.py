"""Deterministic Contoso data: one consistent world projected onto every system the hub touches.

Contoso builds custom HVAC units (rooftop units ``RTU-``, chillers ``CHL-``, air handlers
``AHU-``) to order. ``generate(seed, scale)`` builds a world with ``scale`` legacy orders and,
derived from it, accounts, products, territories with goals, open quotes and SAP orders, then
projects it onto each system in that system's own format:

- ``mainframe_seed()``  LOS records exactly as ``docs/mainframe-api.md`` (copybook strings);
- ``sap_seed()``        SAP OData entities (``A_SalesOrder`` with ``to_Item``, ``A_Customer``,
  ``A_Product``, ``Equipment`` with its partner, ``PPR0`` prices with their validity) and stock
  per plant, as Python values;
- ``dataverse_seed()``  the Dataverse master data of ``docs/dataverse-schema.md`` as Web API
  create payloads (option values, ``<navigation>@odata.bind`` lookups, money as ``JsonNumber``);
- ``quoting_tool_quotes()`` the hub's Quote JSON (camelCase, money as strings).

Large tables are lazy and regenerated per chunk of 1,000 from ``(seed, entity, chunk)``, so a
million legacy orders never sit in memory at once. A small, configurable fraction of records
carries deliberate data-quality problems; ``ContosoData.planted`` lists every one by key, and
``ContosoData.truth`` gives the expected valid view computed from the generator's own values.

Each projection, passed through ``to_jsonable``, is what that system's sandbox peer takes at
``POST /_sandbox/seed`` (``{table: [records]}``), table by table in the order given.

Run ``python -m sandbox.datagen --seed 7 --scale 1000 --out DIR`` to write NDJSON files.
"""

from sandbox.datagen._core import CHUNK, JsonNumber, Planted, Table, to_jsonable
from sandbox.datagen._master import Account, City, County, Goal, Product, Region, Rep
from sandbox.datagen._sap import sap_order_for_quote
from sandbox.datagen._truth import LegacyOrder, LegacyOrderLine, LegacySummary, Truth
from sandbox.datagen._world import DEFAULT_AS_OF, ContosoData, Counts, generate

__all__ = [
    "CHUNK",
    "DEFAULT_AS_OF",
    "Account",
    "City",
    "ContosoData",
    "Counts",
    "County",
    "Goal",
    "JsonNumber",
    "LegacyOrder",
    "LegacyOrderLine",
    "LegacySummary",
    "Planted",
    "Product",
    "Region",
    "Rep",
    "Table",
    "Truth",
    "generate",
    "sap_order_for_quote",
    "to_jsonable",
]
