"""Gold: reporting tables rebuilt deterministically from silver.

Each gold table is a pure function of the silver tables it reads: the same silver gives the same
gold, row for row (fixed schemas, exact decimal sums, output sorted by every dimension column,
nulls last). A rebuild overwrites whole tables, and skips the write when the result equals what
is stored, so an idle rebuild adds no table versions.

Inputs other than the mainframe's may not exist yet (Quoting Tool quotes and forecasts, Dataverse
quotes, goals, territories and postal codes, SAP orders). A gold table builds from whichever of its inputs exist and is
written empty, with its schema, when none do. An input that exists but lacks a contracted column
fails that table with ``LakeSchemaError`` (the other tables are still built). The definitions,
input contracts and formulas are documented in ``docs/lake.md``.

Measures are additive (counts and money sums at the finest territory grain: region, county,
city, zip), and every ratio ships with its numerator and denominator, so a BI tool rolling the
territory hierarchy up recomputes ratios correctly instead of averaging them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.lake.delta import open_table, overwrite_frame, read_frame
from shared.lake.errors import LakeSchemaError
from shared.lake.runs import RUNS_TABLE
from shared.lake.silver import QUARANTINE_TABLE
from shared.lake.storage import LakeStorage

if TYPE_CHECKING:
    import polars as pl
    from deltalake import DeltaTable

    from shared.services.forecasts import TerritoryResolver
    from shared.services.territory import TerritoryMap

log = logging.getLogger(__name__)

TERRITORY = ("region", "county", "city", "zip")
QUOTE_STATES = (("0", "Draft"), ("1", "Active"), ("2", "Won"), ("3", "Closed"))
"""Dynamics 365 quote ``statecode`` -> name (docs/dataverse-schema.md)."""
RECEIVED, ORDERED, QUALIFIED = "Received", "Ordered", "Active"
OPEN_QUOTE_STATUSES = (RECEIVED, "Draft", QUALIFIED)
"""A quote is open pipeline while nothing ordered it and Sales has not won or closed it."""
BACKLOG_STATUSES = ("Open", "Released")
ORDER_SOURCES = (("legacy_orders", "mainframe"), ("sap_orders", "sap"))
"""Silver order tables (all conformed to ORDER_COLUMNS) and the source each stands for."""

# Silver input contracts: the columns each gold table reads from a silver table.
ORDER_COLUMNS = (
    "order_no",
    "customer_no",
    "order_date",
    "requested_date",
    "status",
    "currency",
    "total_amount",
    "plant",
    "quote_ref",
)
QUOTE_COLUMNS = (
    "quote_id",
    "created_at",
    "amount",
    "currency",
    "win_probability",
    "expected_close_date",
    *TERRITORY,
)
DATAVERSE_QUOTE_COLUMNS = ("quoteid", "contoso_quotingtoolid", "statecode", "source_modified_at")
FORECAST_COLUMNS = ("forecast_id", "month", "amount", "currency", *TERRITORY)
DATAVERSE_GOAL_COLUMNS = (
    "goalid",
    "contoso_goalkey",
    "contoso_month",
    "goalstartdate",
    "targetmoney",
    "contoso_territoryid",
)
DATAVERSE_TERRITORY_COLUMNS = (
    "territoryid",
    "contoso_territorycode",
    "name",
    "contoso_level",
    "contoso_parentterritoryid",
)
DATAVERSE_POSTAL_CODE_COLUMNS = ("contoso_postalcodeid", "contoso_name", "contoso_territoryid")
CUSTOMER_COLUMNS = ("customer_no", "zip")
TERRITORIES_TABLE = "dataverse_territories"
POSTAL_CODES_TABLE = "dataverse_contoso_postalcodes"


def _money() -> pl.DataType:
    import polars as pl

    return pl.Decimal(38, 2)


def _schemas() -> dict[str, dict[str, pl.DataType]]:
    import polars as pl

    money = _money()
    ts = pl.Datetime("us", "UTC")
    territory_month: dict[str, pl.DataType] = {
        **{c: pl.String() for c in TERRITORY},
        "month": pl.Date(),
        "currency": pl.String(),
    }
    return {
        "order_backlog": {
            "source": pl.String(),
            "plant": pl.String(),
            "month": pl.Date(),
            "currency": pl.String(),
            "open_orders": pl.Int64(),
            "released_orders": pl.Int64(),
            "order_count": pl.Int64(),
            "backlog_amount": money,
        },
        "integration_health": {
            "source": pl.String(),
            "entity": pl.String(),
            "silver_table": pl.String(),
            "runs": pl.Int64(),
            "records_in": pl.Int64(),
            "records_rejected": pl.Int64(),
            "quarantined_distinct": pl.Int64(),
            "current_rows": pl.Int64(),
            "rejection_rate": pl.Float64(),
            "last_success_at": ts,
            "last_source_modified_at": ts,
            "lag_seconds": pl.Float64(),
        },
        "pipeline_by_territory": {
            **territory_month,
            "open_quotes": pl.Int64(),
            "pipeline_amount": money,
            "weighted_amount": money,
            "qualified_quotes": pl.Int64(),
            "qualified_amount": money,
        },
        "forecast_vs_goal": {
            **territory_month,
            "forecast_amount": money,
            "goal_amount": money,
            "variance_amount": money,
            "attainment": pl.Float64(),
        },
        "forecast_accuracy": {
            **territory_month,
            "forecast_amount": money,
            "ordered_amount": money,
            "error_amount": money,
            "abs_error_amount": money,
            "abs_pct_error": pl.Float64(),
            "accuracy": pl.Float64(),
        },
        "quote_to_order_conversion": {
            **territory_month,
            "quotes": pl.Int64(),
            "converted_quotes": pl.Int64(),
            "conversion_rate": pl.Float64(),
            "quoted_amount": money,
            "ordered_amount": money,
        },
    }


class SilverInputs:
    """Reads silver tables for one rebuild: only the columns a gold table needs, checked."""

    def __init__(self, storage: LakeStorage) -> None:
        self.storage = storage
        self._tables: dict[str, DeltaTable | None] = {}

    def _table(self, table: str) -> DeltaTable | None:
        if table not in self._tables:
            self._tables[table] = open_table(self.storage, "silver", table)
        return self._tables[table]

    def columns_of(self, table: str) -> list[str] | None:
        """The table's column names, or None when it does not exist."""
        delta = self._table(table)
        return None if delta is None else [f.name for f in delta.schema().fields]

    def load(self, table: str, columns: list[str]) -> pl.DataFrame:
        """Those columns of an existing table."""
        import polars as pl

        delta = self._table(table)
        assert delta is not None
        frame = pl.from_arrow(delta.to_pyarrow_table(columns=columns))
        assert isinstance(frame, pl.DataFrame)
        return frame

    def raw(self, table: str) -> pl.DataFrame | None:
        """The whole silver table (None when it does not exist)."""
        names = self.columns_of(table)
        return None if names is None else self.load(table, names)

    def live(self, table: str, columns: Iterable[str]) -> pl.DataFrame | None:
        """The table's non-deleted rows, restricted to ``columns`` (all of which must exist)."""
        import polars as pl

        names = self.columns_of(table)
        if names is None:
            return None
        wanted = list(columns)
        missing = [c for c in wanted if c not in names]
        if missing:
            raise LakeSchemaError(f"silver/{table} lacks contracted columns {missing}")
        if "is_deleted" not in names:
            return self.load(table, wanted)
        frame = self.load(table, [*wanted, "is_deleted"])
        return frame.filter(~pl.col("is_deleted").fill_null(False)).select(wanted)

    def row_count(self, table: str) -> int | None:
        """Rows stored in a silver table, from the Delta log (None when it does not exist)."""
        delta = self._table(table)
        return None if delta is None else int(delta.count())


def _empty(name: str) -> pl.DataFrame:
    import polars as pl

    return pl.DataFrame(schema=_schemas()[name])


def _finish(name: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Cast to the table's schema and sort by every dimension column, nulls last."""
    import polars as pl

    schema = _schemas()[name]
    typed = frame.select([pl.col(c).cast(t) for c, t in schema.items()])
    dimensions = [c for c, t in schema.items() if t in (pl.String(), pl.Date())]
    return typed.sort(dimensions, nulls_last=True)


def _ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """numerator / denominator as float64; null when the denominator is null or zero."""
    import polars as pl

    return (
        pl.when(denominator.is_null() | (denominator == 0))
        .then(None)
        .otherwise(numerator.cast(pl.Float64) / denominator.cast(pl.Float64))
    )


def _orders(inputs: SilverInputs) -> pl.DataFrame | None:
    """Every silver order table that exists, stacked, with its ``source``."""
    import polars as pl

    frames = []
    for table, source in ORDER_SOURCES:
        frame = inputs.live(table, ORDER_COLUMNS)
        if frame is not None:
            frames.append(
                frame.with_columns(
                    pl.lit(source).alias("source"), pl.col("total_amount").cast(_money())
                )
            )
    return pl.concat(frames, how="vertical") if frames else None


# --- The tables ---------------------------------------------------------------------------------


def build_order_backlog(inputs: SilverInputs) -> pl.DataFrame:
    """Open and released orders not yet shipped, by source, plant, month and currency."""
    import polars as pl

    orders = _orders(inputs)
    if orders is None:
        return _empty("order_backlog")
    month = pl.coalesce("requested_date", "order_date").dt.truncate("1mo")
    status = pl.col("status")
    backlog = (
        orders.filter(status.is_in(BACKLOG_STATUSES))
        .group_by("source", "plant", month.alias("month"), "currency")
        .agg(
            (status == "Open").sum().alias("open_orders"),
            (status == "Released").sum().alias("released_orders"),
            pl.len().alias("order_count"),
            pl.col("total_amount").sum().alias("backlog_amount"),
        )
    )
    return _finish("order_backlog", backlog)


def build_integration_health(inputs: SilverInputs) -> pl.DataFrame:
    """Per source entity: records in, rejected, current rows, last success and lag."""
    import polars as pl

    runs = inputs.raw(RUNS_TABLE)
    quarantine = inputs.raw(QUARANTINE_TABLE)
    if runs is None and quarantine is None:
        return _empty("integration_health")
    keys = ["source", "entity", "silver_table"]
    parts: list[pl.DataFrame] = []
    if runs is not None:
        newest_last = ("finished_at", "run_id")
        per_entity = runs.group_by(keys).agg(
            pl.len().alias("runs"),
            pl.col("records_read").sum().alias("records_in"),
            pl.col("quarantined").sum().alias("records_rejected"),
            pl.col("finished_at").max().alias("last_success_at"),
            pl.col("max_source_modified_at").max().alias("last_source_modified_at"),
            # Lag of the latest run: how old the newest record it committed was at commit time.
            (
                pl.col("finished_at").sort_by(*newest_last).last()
                - pl.col("max_source_modified_at").sort_by(*newest_last).last()
            ).alias("lag"),
        )
        parts.append(
            per_entity.with_columns(
                (pl.col("lag").dt.total_microseconds() / 1_000_000).alias("lag_seconds")
            ).drop("lag")
        )
    if quarantine is not None:
        parts.append(quarantine.group_by(keys).agg(pl.len().alias("quarantined_distinct")))
    health = parts[0]
    for part in parts[1:]:
        health = health.join(part, on=keys, how="full", coalesce=True, nulls_equal=True)
    for column in ("runs", "records_in", "records_rejected", "quarantined_distinct"):
        if column not in health.columns:
            health = health.with_columns(pl.lit(0, dtype=pl.Int64).alias(column))
        health = health.with_columns(pl.col(column).fill_null(0))
    for column in ("last_success_at", "last_source_modified_at"):
        if column not in health.columns:
            health = health.with_columns(pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias(column))
    if "lag_seconds" not in health.columns:
        health = health.with_columns(pl.lit(None, dtype=pl.Float64).alias("lag_seconds"))
    tables = health.get_column("silver_table").unique().drop_nulls().sort().to_list()
    counts = pl.DataFrame(
        {"silver_table": tables, "current_rows": [inputs.row_count(t) for t in tables]},
        schema={"silver_table": pl.String, "current_rows": pl.Int64},
    )
    health = health.join(counts, on="silver_table", how="left").with_columns(
        _ratio(pl.col("records_rejected"), pl.col("records_in")).alias("rejection_rate")
    )
    return _finish("integration_health", health)


def _quote_orders(inputs: SilverInputs) -> pl.DataFrame:
    """Per quote id: the live, not cancelled orders that carry it as ``quote_ref`` (SAP's
    PurchaseOrderByCustomer, the mainframe's QTREF) and their total amount."""
    import polars as pl

    orders = _orders(inputs)
    if orders is None:
        return pl.DataFrame(
            schema={"quote_id": pl.String, "ordered_amount": _money(), "orders": pl.UInt32}
        )
    return (
        orders.filter(pl.col("quote_ref").is_not_null() & (pl.col("status") != "Cancelled"))
        .group_by(pl.col("quote_ref").alias("quote_id"))
        .agg(pl.col("total_amount").sum().alias("ordered_amount"), pl.len().alias("orders"))
    )


def _dataverse_states(inputs: SilverInputs) -> pl.DataFrame:
    """Per Quoting Tool quote id: its Dynamics 365 quote's state name (the newest live row when
    several carry the id; flow 7's ``dataverse_quotes``)."""
    import polars as pl

    rows = inputs.live("dataverse_quotes", DATAVERSE_QUOTE_COLUMNS)
    if rows is None:
        return pl.DataFrame(schema={"quote_id": pl.String, "dataverse_state": pl.String})
    return (
        rows.filter(pl.col("contoso_quotingtoolid").is_not_null())
        .sort(
            ["contoso_quotingtoolid", "source_modified_at", "quoteid"],
            descending=[False, True, True],
            nulls_last=True,
        )
        .unique(subset=["contoso_quotingtoolid"], keep="first", maintain_order=True)
        .select(
            pl.col("contoso_quotingtoolid").alias("quote_id"),
            pl.col("statecode")
            .cast(pl.String)
            .replace_strict(dict(QUOTE_STATES), default="Unknown", return_dtype=pl.String)
            .alias("dataverse_state"),
        )
    )


def _quotes(inputs: SilverInputs) -> pl.DataFrame | None:
    """Live quotes with their orders and ``status``: Ordered when an order carries the quote,
    else the Dynamics 365 state (Draft/Active/Won/Closed), else Received (not in Sales yet)."""
    import polars as pl

    quotes = inputs.live("quotes", QUOTE_COLUMNS)
    if quotes is None:
        return None
    joined = quotes.join(_quote_orders(inputs), on="quote_id", how="left").join(
        _dataverse_states(inputs), on="quote_id", how="left"
    )
    status = (
        pl.when(pl.col("orders").is_not_null())
        .then(pl.lit(ORDERED))
        .otherwise(pl.coalesce("dataverse_state", pl.lit(RECEIVED)))
    )
    return joined.with_columns(status.alias("status"))


def build_pipeline_by_territory(inputs: SilverInputs) -> pl.DataFrame:
    """Open quotes by territory and expected-close month: pipeline, probability-weighted, and
    the part Sales has qualified."""
    import polars as pl

    quotes = _quotes(inputs)
    if quotes is None:
        return _empty("pipeline_by_territory")
    exact = pl.Decimal(38, 6)
    weighted = (
        pl.col("amount").cast(exact)
        * pl.col("win_probability").cast(exact)
        * pl.lit("0.01").cast(exact)
    )
    qualified = pl.col("status") == QUALIFIED
    pipeline = (
        quotes.filter(pl.col("status").is_in(OPEN_QUOTE_STATUSES))
        .group_by(
            *TERRITORY, pl.col("expected_close_date").dt.truncate("1mo").alias("month"), "currency"
        )
        .agg(
            pl.len().alias("open_quotes"),
            pl.col("amount").cast(_money()).sum().alias("pipeline_amount"),
            # Sum exactly, round once (half to even) to cents.
            weighted.sum().round(2).alias("weighted_amount"),
            qualified.sum().alias("qualified_quotes"),
            pl.col("amount").cast(_money()).filter(qualified).sum().alias("qualified_amount"),
        )
    )
    return _finish("pipeline_by_territory", pipeline)


def _by_territory_month(
    frame: pl.DataFrame, month: pl.Expr, amount: str, alias: str
) -> pl.DataFrame:
    import polars as pl

    return frame.group_by(*TERRITORY, month.alias("month"), "currency").agg(
        pl.col(amount).cast(_money()).sum().alias(alias)
    )


def _territory_keys() -> list[str]:
    return [*TERRITORY, "month", "currency"]


def _territory_resolver(inputs: SilverInputs) -> TerritoryResolver | None:
    """The resolver forecast intake uses, over the Dynamics 365 hierarchy as flow 7 exported it
    (``dataverse_territories``) and, when exported, the ZIP code map quote intake assigns by
    (``dataverse_contoso_postalcodes``): goals and orders then land on the levels forecasts
    carry. None until the hierarchy is exported."""
    import polars as pl

    from shared.services.forecasts import TerritoryResolver
    from shared.services.territory import Territory, TerritoryMap

    rows = inputs.live(TERRITORIES_TABLE, DATAVERSE_TERRITORY_COLUMNS)
    if rows is None:
        return None
    # Sorted so that the map is the same whatever order silver returns rows in (a duplicate
    # region name or folded ZIP then always resolves to the same row).
    territories = [
        Territory(
            territory_id=str(row["territoryid"]),
            code=str(row["contoso_territorycode"] or ""),
            name=str(row["name"] or ""),
            level=int(row["contoso_level"] or 0),
            parent_id=row["contoso_parentterritoryid"],
        )
        for row in rows.sort("territoryid").iter_rows(named=True)
    ]
    postal_codes: dict[str, str] = {}
    codes = inputs.live(POSTAL_CODES_TABLE, DATAVERSE_POSTAL_CODE_COLUMNS)
    if codes is not None:
        mapped = codes.filter(
            pl.col("contoso_name").is_not_null() & pl.col("contoso_territoryid").is_not_null()
        ).sort("contoso_name", "contoso_postalcodeid")
        postal_codes = dict(
            zip(
                mapped.get_column("contoso_name").to_list(),
                mapped.get_column("contoso_territoryid").to_list(),
                strict=True,
            )
        )
    return TerritoryResolver(TerritoryMap(territories, postal_codes))


def _goals(inputs: SilverInputs) -> pl.DataFrame | None:
    """Live Dynamics 365 goals (flow 7's ``dataverse_goals``) with their territory's levels,
    month and currency; None when the table does not exist.

    A goal's territory is its ``contoso_territoryid`` lookup, else the code its
    ``contoso_goalkey`` (``{territorycode}|{YYYY-MM}``) starts with, resolved as forecast intake
    resolves a submitted code. Its month is ``contoso_month``, else the month of
    ``goalstartdate``. Goal money is in the organisation's base currency, as forecasts are.
    """
    import polars as pl

    from shared.services.forecasts import FORECAST_CURRENCY

    goals = inputs.live("dataverse_goals", DATAVERSE_GOAL_COLUMNS)
    if goals is None:
        return None
    resolver = _territory_resolver(inputs)
    if resolver is None:
        if goals.height:
            log.warning(
                "forecast_vs_goal: %d goal(s) left out: dataverse_territories not exported yet",
                goals.height,
            )
        return None
    codes = pl.DataFrame(
        {
            "contoso_territoryid": list(resolver.map.by_id),
            "lookup_code": [t.code or None for t in resolver.map.by_id.values()],
        },
        schema={"contoso_territoryid": pl.String, "lookup_code": pl.String},
    )
    month_text = pl.concat_str(pl.col("contoso_month").str.strip_chars(), pl.lit("-01"))
    coded = goals.join(codes, on="contoso_territoryid", how="left").select(
        pl.coalesce("lookup_code", pl.col("contoso_goalkey").str.split("|").list.first()).alias(
            "code"
        ),
        pl.coalesce(
            month_text.str.to_date("%Y-%m-%d", strict=False),
            pl.col("goalstartdate").dt.truncate("1mo"),
        ).alias("month"),
        pl.lit(FORECAST_CURRENCY).alias("currency"),
        pl.col("targetmoney").cast(_money()).alias("target_amount"),
    )
    wanted = sorted(c for c in coded.get_column("code").unique().to_list() if c is not None)
    levels = [resolver.resolve(code) for code in wanted]
    places = pl.DataFrame(
        {
            "code": wanted,
            "region": [lv.region for lv in levels],
            "county": [lv.county for lv in levels],
            "city": [lv.city for lv in levels],
            # A territory is never a single ZIP code (the City/ZIP level is the city).
            "zip": [None] * len(wanted),
        },
        schema={"code": pl.String, **dict.fromkeys(TERRITORY, pl.String)},
    )
    placed = coded.join(places, on="code", how="left")
    unplaced = placed.filter(pl.col("region").is_null()).height
    if unplaced:
        log.warning(
            "forecast_vs_goal: %d goal(s) left out: territory not in dataverse_territories",
            unplaced,
        )
    return placed.filter(pl.col("region").is_not_null()).drop("code")


def build_forecast_vs_goal(inputs: SilverInputs) -> pl.DataFrame:
    """Forecast against the Dynamics 365 goal per territory and month, at the level forecasts are
    submitted at (a missing side counts as zero).

    Goals add up the hierarchy (a county's goal is the sum of its cities', a region's the sum of
    its counties'), so listing every level would count one target two or three times. A goal
    counts when forecasts are submitted for its territory (in any month), or when it is the
    region goal of a region nobody forecasts any territory of; and only in months that have a
    forecast (the forecast horizon). Without forecasts the table is empty.
    """
    import polars as pl

    forecasts = inputs.live("forecasts", FORECAST_COLUMNS)
    if forecasts is None:
        return _empty("forecast_vs_goal")
    keys = _territory_keys()
    month = pl.col("month").dt.truncate("1mo")
    f = _by_territory_month(forecasts, month, "amount", "forecast_amount")
    zero = pl.lit(0).cast(_money())
    goals = _goals(inputs)
    if goals is None:
        joined = f.with_columns(zero.alias("goal_amount"))
    else:
        forecast_places = f.select(*TERRITORY).unique()
        forecast_regions = forecast_places.get_column("region").drop_nulls().unique()
        region_goal = (
            pl.col("county").is_null()
            & pl.col("city").is_null()
            & ~pl.col("region").is_in(forecast_regions.implode())
        )
        in_scope = pl.concat(
            [
                goals.join(forecast_places, on=list(TERRITORY), how="semi", nulls_equal=True),
                goals.filter(region_goal),
            ]
        ).filter(pl.col("month").is_in(f.get_column("month").unique().implode()))
        g = _by_territory_month(in_scope, pl.col("month"), "target_amount", "goal_amount")
        joined = f.join(g, on=keys, how="full", coalesce=True, nulls_equal=True).with_columns(
            pl.col("forecast_amount").fill_null(zero), pl.col("goal_amount").fill_null(zero)
        )
    result = joined.with_columns(
        (pl.col("forecast_amount") - pl.col("goal_amount")).alias("variance_amount"),
        _ratio(pl.col("forecast_amount"), pl.col("goal_amount")).alias("attainment"),
    )
    return _finish("forecast_vs_goal", result)


Place = tuple[str | None, str | None, str | None, str | None]
"""A territory row key: (region, county, city, zip)."""


def _zip_places(territories: TerritoryMap, zips: Iterable[str]) -> pl.DataFrame:
    """Each ZIP code's territory levels by the ZIP rule of the hub's assignment (quote intake):
    the ZIP's City/ZIP territory and its ancestors. ZIP codes it cannot place are not listed."""
    import polars as pl

    rows = []
    for code in zips:
        # Customers carry no county or region name, so only the ZIP rule can apply.
        found = territories.assign(code, None, None)
        if found.rule == "zip":
            rows.append((code, found.region, found.county, found.city))
    return pl.DataFrame(
        rows,
        schema={
            "customer_zip": pl.String,
            "region": pl.String,
            "county": pl.String,
            "city": pl.String,
        },
        orient="row",
    )


def _forecast_level(place: Place, forecast_places: set[Place]) -> Place:
    """The row an order placed at ``place`` counts on: the most specific territory on its
    lineage that forecasts are submitted for, else its own territory."""
    region, county, city, _ = place
    for candidate in (
        (region, county, city, None),
        (region, county, None, None),
        (region, None, None, None),
    ):
        if candidate in forecast_places:
            return candidate
    return (region, county, city, None)


def _ordered_by_territory(inputs: SilverInputs, forecasts: pl.DataFrame) -> pl.DataFrame | None:
    """Ordered amount (live orders, not cancelled) by territory and order month, within the
    forecast months, each order on the row of the forecasts of its customer's territory.

    ``forecasts`` is the forecast side (territory, month, currency rows). None when orders,
    customers, the territory hierarchy or the ZIP code map are not in silver yet.
    """
    import polars as pl

    orders = _orders(inputs)
    customers = inputs.live("customers", CUSTOMER_COLUMNS)
    if orders is None or customers is None:
        return None
    resolver = _territory_resolver(inputs)
    if resolver is None or inputs.columns_of(POSTAL_CODES_TABLE) is None:
        log.warning(
            "forecast_accuracy: ordered amounts unknown: %s not exported yet",
            TERRITORIES_TABLE if resolver is None else POSTAL_CODES_TABLE,
        )
        return None
    month = pl.col("order_date").dt.truncate("1mo")
    horizon = forecasts.get_column("month").unique().implode()
    in_horizon = orders.filter((pl.col("status") != "Cancelled") & month.is_in(horizon)).join(
        # Silver holds one row per customer; sorted first so a duplicate could not make the
        # result depend on row order.
        customers.sort("customer_no", "zip", nulls_last=True)
        .unique(subset=["customer_no"], keep="first", maintain_order=True)
        .rename({"zip": "customer_zip"}),
        on="customer_no",
        how="left",
    )
    zips = in_horizon.get_column("customer_zip").drop_nulls().unique().sort().to_list()
    placed = in_horizon.join(_zip_places(resolver.map, zips), on="customer_zip", how="left")
    unplaced = placed.filter(pl.col("region").is_null())
    if unplaced.height:
        no_zip = unplaced.filter(pl.col("customer_zip").is_null()).height
        log.warning(
            "forecast_accuracy: %d order(s) in forecast months left out: %d without a customer "
            "ZIP code (customer unknown or no ZIP), %d whose ZIP code %s maps to no territory",
            unplaced.height,
            no_zip,
            unplaced.height - no_zip,
            POSTAL_CODES_TABLE,
        )
    placed = placed.filter(pl.col("region").is_not_null())
    forecast_places: set[Place] = set(forecasts.select(*TERRITORY).unique().iter_rows())
    levels = placed.select("region", "county", "city").unique()
    targets = [_forecast_level((*row, None), forecast_places) for row in levels.iter_rows()]
    mapping = pl.concat(
        [
            levels,
            pl.DataFrame(targets, schema={f"row_{c}": pl.String for c in TERRITORY}, orient="row"),
        ],
        how="horizontal",
    )
    on_rows = placed.join(
        mapping, on=["region", "county", "city"], how="left", nulls_equal=True
    ).select(
        *(pl.col(f"row_{c}").alias(c) for c in TERRITORY),
        "order_date",
        "currency",
        "total_amount",
    )
    return _by_territory_month(on_rows, month, "total_amount", "ordered_amount")


def build_forecast_accuracy(inputs: SilverInputs) -> pl.DataFrame:
    """Forecast against what was actually ordered, per territory and month.

    An order's territory is its customer's ZIP code placed as the hub assigns territories
    (``contoso_postalcodes`` -> City/ZIP territory and its ancestors); it counts on the row of the
    most specific territory of that lineage that forecasts are submitted for (in any month), else
    on its own City/ZIP territory, and only in months that have a forecast. Orders whose ZIP code
    cannot be placed are left out (logged). Without forecasts the table is empty.
    """
    import polars as pl

    forecasts = inputs.live("forecasts", FORECAST_COLUMNS)
    if forecasts is None:
        return _empty("forecast_accuracy")
    keys = _territory_keys()
    f = _by_territory_month(
        forecasts, pl.col("month").dt.truncate("1mo"), "amount", "forecast_amount"
    )
    ordered = _ordered_by_territory(inputs, f)
    zero = pl.lit(0).cast(_money())
    if ordered is None:
        joined = f.with_columns(pl.lit(None).cast(_money()).alias("ordered_amount"))
    else:
        joined = f.join(ordered, on=keys, how="full", coalesce=True, nulls_equal=True).with_columns(
            pl.col("forecast_amount").fill_null(zero), pl.col("ordered_amount").fill_null(zero)
        )
    error = pl.col("forecast_amount") - pl.col("ordered_amount")
    ape = _ratio(error.abs(), pl.col("ordered_amount"))
    result = joined.with_columns(
        error.alias("error_amount"),
        error.abs().alias("abs_error_amount"),
        ape.alias("abs_pct_error"),
        pl.when(ape.is_null())
        .then(None)
        .otherwise(pl.max_horizontal(pl.lit(0.0), 1.0 - ape))
        .alias("accuracy"),
    )
    return _finish("forecast_accuracy", result)


def build_quote_to_order_conversion(inputs: SilverInputs) -> pl.DataFrame:
    """Quotes by territory and the month the hub first received them, and how many became
    (non-cancelled) orders."""
    import polars as pl

    quotes = _quotes(inputs)
    if quotes is None:
        return _empty("quote_to_order_conversion")
    conversion = (
        quotes.group_by(
            *TERRITORY,
            pl.col("created_at").dt.date().dt.truncate("1mo").alias("month"),
            "currency",
        )
        .agg(
            pl.len().alias("quotes"),
            pl.col("orders").is_not_null().sum().alias("converted_quotes"),
            pl.col("amount").cast(_money()).sum().alias("quoted_amount"),
            pl.col("ordered_amount")
            .fill_null(pl.lit(0).cast(_money()))
            .sum()
            .alias("ordered_amount"),
        )
        .with_columns(_ratio(pl.col("converted_quotes"), pl.col("quotes")).alias("conversion_rate"))
    )
    return _finish("quote_to_order_conversion", conversion)


GOLD_BUILDERS: dict[str, Callable[[SilverInputs], pl.DataFrame]] = {
    "order_backlog": build_order_backlog,
    "integration_health": build_integration_health,
    "pipeline_by_territory": build_pipeline_by_territory,
    "forecast_vs_goal": build_forecast_vs_goal,
    "forecast_accuracy": build_forecast_accuracy,
    "quote_to_order_conversion": build_quote_to_order_conversion,
}


@dataclass
class GoldResult:
    """Rows per gold table, which tables changed, and which failed (with the reason)."""

    rows: dict[str, int] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class GoldBuildError(LakeSchemaError):
    """One or more gold tables could not be built; the others were."""

    def __init__(self, result: GoldResult) -> None:
        super().__init__(
            "gold tables failed: "
            + "; ".join(f"{name}: {reason}" for name, reason in sorted(result.failed.items()))
        )
        self.result = result


def rebuild_gold(storage: LakeStorage, *, tables: Iterable[str] | None = None) -> GoldResult:
    """Rebuild every gold table (or ``tables``) from silver; the job after each poll.

    Deterministic and idempotent: rebuilding from unchanged silver writes nothing. Raises
    ``GoldBuildError`` after building the rest when any table's inputs break their contract.
    """
    names = list(GOLD_BUILDERS) if tables is None else list(tables)
    unknown = [n for n in names if n not in GOLD_BUILDERS]
    if unknown:
        raise ValueError(f"unknown gold tables: {unknown}")
    inputs = SilverInputs(storage)
    result = GoldResult()
    for name in names:
        try:
            frame = GOLD_BUILDERS[name](inputs)
        except LakeSchemaError as exc:
            log.error("gold/%s: %s", name, exc)
            result.failed[name] = str(exc)
            continue
        result.rows[name] = frame.height
        if overwrite_frame(storage, "gold", name, frame):
            result.written.append(name)
        log.info("gold/%s: %d rows", name, frame.height)
    if result.failed:
        raise GoldBuildError(result)
    return result


def read_gold(storage: LakeStorage, table: str) -> pl.DataFrame | None:
    """A gold table as a polars DataFrame (None when it was never built)."""
    return read_frame(storage, "gold", table)
