"""Initial sync in dry-run mode: the data-quality pass before a sync map is enabled.

For a map, both sides are read in full and compared by business key, and the report says what
the first sync *would* do — create, update, couple — and what it could not do safely: duplicates
by business key (per system) and unmapped records, plus orphans (dependent records whose parent
is unknown). Nothing is written to any system; the report goes to ``out/dry-run-<map>.json`` and
is appended to the gold Delta table ``initial_sync_dry_run``.

Maps:

- ``accounts``: the mainframe customer file (which masters accounts) and SAP's customer master
  (``A_Customer``) against Dataverse ``accounts`` by account number. A duplicate is the same
  company under a second record: a repeated ``CUSTNO`` in the mainframe; in SAP a second customer
  number that no other system knows, for a company whose name matches a known account; in
  Dataverse a row without account number that matches a numbered row by name or address. Orphans
  are SAP sales orders whose sold-to party is unknown to both the mainframe and Dataverse.
- ``products``: SAP ``A_Product`` (which masters products) against Dataverse ``products`` by SKU
  (``productnumber``), comparing product family and lifecycle state.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.adapters.dataverse import DataverseClient
from shared.adapters.mainframe import MainframeClient
from shared.adapters.sap import PRODUCTS, SALES_ORDERS, SapClient
from shared.lake.storage import LakeStorage

log = logging.getLogger(__name__)

GOLD_TABLE = "initial_sync_dry_run"
CUSTOMERS = "API_BUSINESS_PARTNER/A_Customer"
MAPS = ("accounts", "products", "legacy_orders")
# SAP product group -> Dataverse contoso_productfamily option value.
PRODUCT_FAMILY = {"RTU": 100000000, "CHL": 100000001, "AHU": 100000002}
# Abbreviations people use when keying a company in again, and the legal suffixes they vary.
_ABBREVIATIONS = {
    "MECH": "MECHANICAL",
    "FAC": "FACILITIES",
    "PROP": "PROPERTY",
    "MGMT": "MANAGEMENT",
    "MED": "MEDICAL",
    "CTR": "CENTER",
    "SCH": "SCHOOL",
    "DIST": "DISTRICT",
    "MFG": "MANUFACTURING",
    "CONTR": "CONTRACTORS",
    "UNIV": "UNIVERSITY",
    "SVCS": "SERVICES",
    "SVC": "SERVICE",
    "HOSP": "HOSPITAL",
    "INTL": "INTERNATIONAL",
    "ASSOC": "ASSOCIATES",
    "BLDG": "BUILDING",
}
_SUFFIXES = frozenset(
    {"INC", "INCORPORATED", "LLC", "CORP", "CORPORATION", "CO", "COMPANY", "GROUP", "PARTNERS"}
)
_MARKERS = re.compile(r"\(DUP\)|-\s*DO NOT USE|\bDUPLICATE\b")
_WORD = re.compile(r"[A-Z0-9]+")


def name_key(name: str) -> str:
    """A company name reduced to what survives re-keying: case, punctuation, legal suffix,
    common abbreviations and duplicate markers removed."""
    text = _MARKERS.sub(" ", name.upper())
    words = [_ABBREVIATIONS.get(w, w) for w in _WORD.findall(text)]
    while words and words[-1] in _SUFFIXES:
        words.pop()
    return " ".join(words)


@dataclass
class DryRunReport:
    """What the first sync of a map would do, and what blocks it."""

    map_name: str
    run_at: dt.datetime
    counts: dict[str, int] = field(default_factory=dict)
    create: list[str] = field(default_factory=list)
    update: list[dict[str, Any]] = field(default_factory=list)
    couple: list[str] = field(default_factory=list)
    duplicates: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    unmapped: list[dict[str, Any]] = field(default_factory=list)
    orphans: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def duplicate_keys(self, system: str) -> set[str]:
        """The business keys with a duplicate in ``system``."""
        return {str(d["key"]) for d in self.duplicates.get(system, [])}

    def orphan_keys(self, entity: str) -> set[str]:
        """The keys of orphaned records of ``entity`` (e.g. ``sap.A_SalesOrder``)."""
        return {str(o["key"]) for o in self.orphans.get(entity, [])}

    def to_json(self) -> dict[str, Any]:
        """The report as JSON (what the file holds)."""
        return {
            "map": self.map_name,
            "runAt": self.run_at.isoformat(),
            "counts": self.counts,
            "wouldCreate": sorted(self.create),
            "wouldUpdate": sorted(self.update, key=lambda u: str(u["key"])),
            "wouldCouple": sorted(self.couple),
            "duplicates": {
                k: sorted(v, key=lambda d: str(d["key"])) for k, v in self.duplicates.items()
            },
            "unmapped": sorted(self.unmapped, key=lambda u: (str(u["system"]), str(u["key"]))),
            "orphans": {k: sorted(v, key=lambda o: str(o["key"])) for k, v in self.orphans.items()},
        }

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per finding, for the gold table."""
        out: list[dict[str, Any]] = []

        def add(action: str, system: str, key: str, detail: Any = "") -> None:
            out.append(
                {
                    "run_at": self.run_at,
                    "map": self.map_name,
                    "action": action,
                    "system": system,
                    "key": key,
                    "detail": detail
                    if isinstance(detail, str)
                    else json.dumps(detail, default=str),
                }
            )

        for key in self.create:
            add("create", "dataverse", key)
        for change in self.update:
            add("update", "dataverse", str(change["key"]), change["fields"])
        for key in self.couple:
            add("couple", "dataverse", key)
        for system, found in self.duplicates.items():
            for dup in found:
                add("duplicate", system, str(dup["key"]), dup)
        for item in self.unmapped:
            add("unmapped", str(item["system"]), str(item["key"]), item["reason"])
        for entity, found in self.orphans.items():
            for orphan in found:
                add("orphan", entity, str(orphan["key"]), orphan)
        return out


@dataclass
class DryRun:
    """Reads both sides of a map and reports; never writes to the systems."""

    sap: SapClient
    mainframe: MainframeClient
    dataverse: DataverseClient
    storage: LakeStorage | None
    out_dir: Path
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)

    def run(self, map_name: str) -> DryRunReport:
        """Compare, then write the report file and the gold rows."""
        if map_name == "accounts":
            report = self._accounts()
        elif map_name == "products":
            report = self._products()
        elif map_name == "legacy_orders":
            report = self._legacy_orders()
        else:
            raise ValueError(f"unknown sync map {map_name!r}; known: {', '.join(MAPS)}")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"dry-run-{map_name}.json"
        path.write_text(json.dumps(report.to_json(), indent=1, default=str), encoding="utf-8")
        if self.storage is not None:
            write_gold(self.storage, report.rows())
        log.info("dry run %s: %s", map_name, report.counts)
        return report

    # ---- readers --------------------------------------------------------------------------------
    def _sap_rows(self, path: str, select: Iterable[str] = ()) -> list[dict[str, Any]]:
        return [r.data for page in self.sap.read_all(path, select=list(select)) for r in page]

    def _mainframe_rows(self, entity: str) -> list[dict[str, Any]]:
        return [r for page in self.mainframe.list_changes(entity, None) for r in page.records]

    # ---- legacy orders ------------------------------------------------------------------------
    def _legacy_orders(self) -> DryRunReport:
        """Mainframe orders and lines against Dataverse contoso_legacyorders: orders whose
        customer is not in the customer file and lines whose order is not in the order file are
        orphans; records whose dates or amounts don't parse are unmapped."""
        report = DryRunReport("legacy_orders", self.clock())
        customers = {str(r.get("CUSTNO") or "").strip() for r in self._mainframe_rows("customers")}
        orders = self._mainframe_rows("orders")
        lines = self._mainframe_rows("orderlines")
        in_dataverse = {
            str(r.get("contoso_ordernumber"))
            for r in self.dataverse.query("contoso_legacyorders", select=["contoso_ordernumber"])
        }
        report.counts = {
            "mainframe.orders": len(orders),
            "mainframe.orderlines": len(lines),
            "dataverse.contoso_legacyorders": len(in_dataverse),
        }
        orphans: dict[str, list[dict[str, Any]]] = defaultdict(list)
        order_numbers = set()
        for record in orders:
            key = str(record.get("ORDNO") or "").strip()
            order_numbers.add(key)
            problem = _legacy_problem(record, ("ORDDT", "REQDT"), ("TOTAMT",))
            if problem:
                report.unmapped.append(
                    {"system": "mainframe.orders", "key": key, "reason": problem}
                )
                continue
            customer = str(record.get("CUSTNO") or "").strip()
            if customer not in customers:
                orphans["mainframe.orders"].append(
                    {"key": key, "reason": f"customer {customer} is not in the customer file"}
                )
                continue
            (report.couple if key in in_dataverse else report.create).append(key)
        for record in lines:
            order = str(record.get("ORDNO") or "").strip()
            key = f"{order}|{str(record.get('LINENO') or '').strip()}"
            problem = _legacy_problem(record, (), ("QTY", "UPRICE"))
            if not problem and int(str(record["QTY"]).strip()) <= 0:
                problem = f"QTY {record['QTY']!r} is not positive"
            if problem:
                report.unmapped.append(
                    {"system": "mainframe.orderlines", "key": key, "reason": problem}
                )
            elif order not in order_numbers:
                orphans["mainframe.orderlines"].append(
                    {"key": key, "reason": f"order {order} is not in the order file"}
                )
        report.orphans = dict(orphans)
        return report

    # ---- accounts -------------------------------------------------------------------------------
    def _accounts(self) -> DryRunReport:
        report = DryRunReport("accounts", self.clock())
        mainframe = self._mainframe_rows("customers")
        sap = self._sap_rows(CUSTOMERS)
        dataverse = list(
            self.dataverse.query(
                "accounts",
                select=[
                    "accountid",
                    "accountnumber",
                    "name",
                    "address1_line1",
                    "address1_postalcode",
                ],
            )
        )
        report.counts = {
            "mainframe.customers": len(mainframe),
            "sap.A_Customer": len(sap),
            "dataverse.accounts": len(dataverse),
        }

        mf_by_number: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in mainframe:
            number = str(row.get("CUSTNO") or "").strip()
            if not number:
                report.unmapped.append(
                    {"system": "mainframe", "key": "", "reason": "customer without CUSTNO"}
                )
                continue
            mf_by_number[number].append(row)
        dv_numbered: dict[str, dict[str, Any]] = {}
        dv_unnumbered: list[dict[str, Any]] = []
        for row in dataverse:
            number = str(row.get("accountnumber") or "").strip()
            if number:
                dv_numbered[number] = row
            else:
                dv_unnumbered.append(row)

        dups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for number, rows in mf_by_number.items():
            if len(rows) > 1:
                names = [str(r.get("CUSTNM") or "").strip() for r in rows]
                dups["mainframe"].append({"key": number, "records": len(rows), "names": names})

        known = set(mf_by_number) | set(dv_numbered)
        by_name: dict[str, str] = {}
        for number in sorted(known):
            source = dv_numbered.get(number) or {}
            name = str(source.get("name") or mf_by_number.get(number, [{}])[0].get("CUSTNM") or "")
            by_name.setdefault(name_key(name), number)

        for row in sap:
            number = str(row.get("Customer") or "").strip()
            if number in known:
                continue
            original = by_name.get(name_key(str(row.get("CustomerName") or "")))
            if original is not None:
                dups["sap"].append(
                    {"key": original, "duplicate": number, "name": row.get("CustomerName")}
                )
            else:
                report.unmapped.append(
                    {
                        "system": "sap",
                        "key": number,
                        "reason": "customer unknown to the mainframe and Dataverse",
                    }
                )

        by_address = {
            (str(r.get("address1_line1") or "").upper(), str(r.get("address1_postalcode") or "")): n
            for n, r in dv_numbered.items()
            if r.get("address1_line1")
        }
        dv_by_name = {name_key(str(r.get("name") or "")): n for n, r in dv_numbered.items()}
        for row in dv_unnumbered:
            address = (
                str(row.get("address1_line1") or "").upper(),
                str(row.get("address1_postalcode") or ""),
            )
            original = dv_by_name.get(name_key(str(row.get("name") or ""))) or (
                by_address.get(address) if address[0] else None
            )
            if original is not None:
                dups["dataverse"].append(
                    {"key": original, "duplicate": row.get("accountid"), "name": row.get("name")}
                )
            else:
                report.unmapped.append(
                    {
                        "system": "dataverse",
                        "key": str(row.get("accountid")),
                        "reason": "account without account number matching no known account",
                    }
                )
        report.duplicates = dict(dups)

        for number, rows in sorted(mf_by_number.items()):
            if len(rows) > 1:
                continue  # which of the two records is right is a person's decision
            target = dv_numbered.get(number)
            if target is None:
                report.create.append(number)
                continue
            source_name = str(rows[0].get("CUSTNM") or "").strip()
            if name_key(source_name) != name_key(str(target.get("name") or "")):
                report.update.append(
                    {"key": number, "fields": {"name": [target.get("name"), source_name]}}
                )
            report.couple.append(number)

        orphans = []
        for order in self._sap_rows(SALES_ORDERS, ("SalesOrder", "SoldToParty")):
            party = str(order.get("SoldToParty") or "").strip()
            if party not in known:
                orphans.append({"key": str(order["SalesOrder"]), "parent": party})
        if orphans:
            report.orphans["sap.A_SalesOrder"] = orphans
        return report

    # ---- products -------------------------------------------------------------------------------
    def _products(self) -> DryRunReport:
        report = DryRunReport("products", self.clock())
        sap = self._sap_rows(PRODUCTS, ("Product", "ProductGroup", "IsMarkedForDeletion"))
        dataverse = list(
            self.dataverse.query(
                "products",
                select=["productid", "productnumber", "name", "contoso_productfamily", "statecode"],
            )
        )
        report.counts = {"sap.A_Product": len(sap), "dataverse.products": len(dataverse)}
        dups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        dv_by_sku: dict[str, dict[str, Any]] = {}
        for row in dataverse:
            raw = str(row.get("productnumber") or "")
            sku = raw.strip().upper()
            if not sku:
                report.unmapped.append(
                    {
                        "system": "dataverse",
                        "key": str(row.get("productid")),
                        "reason": "product without SKU",
                    }
                )
                continue
            if sku in dv_by_sku:
                dups["dataverse"].append({"key": sku, "duplicate": row.get("productid")})
                continue
            dv_by_sku[sku] = row
        seen: set[str] = set()
        for row in sap:
            sku = str(row.get("Product") or "").strip().upper()
            if sku in seen:
                dups["sap"].append({"key": sku})
                continue
            seen.add(sku)
            family = PRODUCT_FAMILY.get(str(row.get("ProductGroup") or ""))
            if family is None:
                report.unmapped.append(
                    {
                        "system": "sap",
                        "key": sku,
                        "reason": f"product group {row.get('ProductGroup')!r} has no family",
                    }
                )
                continue
            target = dv_by_sku.get(sku)
            if target is None:
                report.create.append(sku)
                continue
            changed = _product_changes(row, family, target)
            if changed:
                report.update.append({"key": sku, "fields": changed})
            report.couple.append(sku)
        report.duplicates = dict(dups)
        return report


def _legacy_problem(record: Mapping[str, Any], dates: Iterable[str], numbers: Iterable[str]) -> str:
    """Why a legacy record cannot be mapped ("" when it can): bad dates or numbers."""
    for name in dates:
        value = str(record.get(name) or "").strip()
        if value:
            try:
                dt.datetime.strptime(value, "%Y%m%d")
            except ValueError:
                return f"{name} {value!r} is not a YYYYMMDD date"
    for name in numbers:
        value = str(record.get(name) or "").strip()
        if not value.isdigit():
            return f"{name} {value!r} is not an implied-decimal number"
    return ""


def _product_changes(
    sap: Mapping[str, Any], family: int, target: Mapping[str, Any]
) -> dict[str, list[Any]]:
    changed: dict[str, list[Any]] = {}
    if target.get("contoso_productfamily") != family:
        changed["contoso_productfamily"] = [target.get("contoso_productfamily"), family]
    retired = bool(sap.get("IsMarkedForDeletion"))
    if retired != (target.get("statecode") == 1):
        changed["statecode"] = [target.get("statecode"), 1 if retired else 0]
    return changed


def write_gold(storage: LakeStorage, rows: list[dict[str, Any]]) -> None:
    """Append a run's findings to ``gold/initial_sync_dry_run`` (created on first use)."""
    import pyarrow as pa

    from shared.lake.delta import append_table

    schema = pa.schema(
        [
            ("run_at", pa.timestamp("us", tz="UTC")),
            ("map", pa.string()),
            ("action", pa.string()),
            ("system", pa.string()),
            ("key", pa.string()),
            ("detail", pa.string()),
        ]
    )
    data = pa.Table.from_pylist(rows, schema=schema)
    append_table(storage, "gold", GOLD_TABLE, data)
