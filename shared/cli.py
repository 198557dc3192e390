"""Operator CLI: ``python -m shared.cli`` (or the ``datahub`` console script).

Runs against the environment's settings, or ``local.settings.json`` when it exists (so it works
beside ``func start`` and ``python -m sandbox serve --write-local-settings``). It uses the same
wiring and services as the Functions app: running a job here is exactly what its timer does.

    datahub jobs list
    datahub jobs run mainframe-poll | gold-rebuild | dataverse-load | dataverse-export |
                     quote-qualification | lake-ingest
    datahub backfill mainframe --since 2026-01-01T00:00:00Z [--entity orders]
    datahub watermarks list [--job JOB]
    datahub watermarks reset JOB ENTITY [--value VALUE]
    datahub gold rebuild
    datahub counts
    datahub rejections [--flow FLOW]
    datahub dry-run accounts|products|legacy_orders [--out DIR]
    datahub reconcile [--entity quotes|legacy_orders|accounts ...] [--no-write]
    datahub deadletters list QUEUE [--limit N]
    datahub deadletters show QUEUE SEQUENCE_NUMBER
    datahub deadletters resubmit QUEUE [--message-id ID ...] [--limit N]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from shared.services.dry_run import MAPS as DRY_RUN_MAPS

log = logging.getLogger(__name__)


def _jobs() -> dict[str, Callable[[], Any]]:
    from shared import wiring
    from shared.services.forecasts import ingest_quoting_tool

    return {
        "mainframe-poll": lambda: wiring.lake_jobs().poll_mainframe(),
        "gold-rebuild": lambda: wiring.lake_jobs().rebuild_gold(),
        "dataverse-load": lambda: wiring.lake_jobs().load_dataverse(),
        "dataverse-export": lambda: wiring.lake_jobs().export_dataverse(),
        "quote-qualification": lambda: wiring.quote_flow().track_qualification(),
        "lake-ingest": lambda: ingest_quoting_tool(wiring.lake(), wiring.watermarks()),
        "sap-inbound": lambda: wiring.sap_inbound().run(),
        "sap-outbound": lambda: wiring.sap_outbound().run(),
        "reconcile": lambda: wiring.reconciler().run().summary(),
    }


JOB_NAMES = (
    "mainframe-poll",
    "gold-rebuild",
    "dataverse-load",
    "dataverse-export",
    "quote-qualification",
    "lake-ingest",
    "sap-inbound",
    "sap-outbound",
    "reconcile",
)


def _plain(value: Any) -> Any:
    """Results as JSON-ready data (dataclasses, dates, decimals, sets)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _emit(out: TextIO, value: Any) -> None:
    out.write(json.dumps(_plain(value), indent=2, sort_keys=True) + "\n")


def progress(out: TextIO, done: int, total: int, label: str, width: int = 30) -> None:
    """A one-line text progress bar, redrawn in place."""
    filled = width * done // total if total else width
    out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label:<24}")
    if done >= total:
        out.write("\n")
    out.flush()


def _parse_instant(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset (e.g. Z)")
    return value.astimezone(dt.UTC)


def cmd_jobs(args: argparse.Namespace, out: TextIO) -> int:
    if args.action == "list":
        out.write("\n".join(JOB_NAMES) + "\n")
        return 0
    result = _jobs()[args.job]()
    _emit(out, result)
    return 0


def cmd_backfill(args: argparse.Namespace, out: TextIO) -> int:
    """Re-read the mainframe from ``since``, one entity at a time, with a progress bar.

    The mainframe lists changes *since* a time, so a backfill moves each entity's watermark back
    to ``since`` and polls; silver's MERGE absorbs what it already holds, so nothing doubles.
    The range therefore ends now: the LOS gateway has no "changed before" filter, and records
    after the range would arrive with the next regular poll anyway.
    """
    from shared import wiring
    from shared.services.poll_mainframe import ENTITIES, JOB, format_watermark, poll_mainframe

    settings = wiring.settings()
    store = wiring.watermarks()
    results = {}
    entities: Sequence[str] = args.entity or ENTITIES
    for index, entity in enumerate(entities):
        progress(sys.stderr, index, len(entities), entity)
        store.reset(JOB, entity, format_watermark(args.since))
        result = poll_mainframe(
            wiring.mainframe(),
            store,
            wiring.lake(),
            overlap=dt.timedelta(seconds=settings.mainframe_overlap_seconds),
            entities=[entity],
        )
        results[entity] = result.entities.get(entity)
    progress(sys.stderr, len(entities), len(entities), "done")
    _emit(out, results)
    return 0


def cmd_watermarks(args: argparse.Namespace, out: TextIO) -> int:
    from shared import wiring

    store = wiring.watermarks()
    if args.action == "list":
        _emit(out, store.list(args.job))
        return 0
    store.reset(args.job, args.entity, args.value)
    out.write(f"reset {args.job}/{args.entity} to {args.value or '(nothing: full re-read)'}\n")
    return 0


def cmd_gold(args: argparse.Namespace, out: TextIO) -> int:
    return cmd_jobs(argparse.Namespace(action="run", job="gold-rebuild"), out)


def table_counts(layers: Iterable[str] = ("silver", "gold")) -> dict[str, dict[str, int]]:
    """Row counts of every Delta table in the given layers."""
    from shared import wiring
    from shared.lake.delta import open_table

    storage = wiring.lake()
    counts: dict[str, dict[str, int]] = {}
    for layer in layers:
        container = storage.blob_service.get_container_client(storage.container(layer))  # type: ignore[arg-type]
        names = sorted(
            {
                blob.name.split("/_delta_log/")[0]
                for blob in container.list_blobs()
                if "/_delta_log/" in blob.name
            }
        )
        counts[layer] = {}
        for name in names:
            table = open_table(storage, layer, name)  # type: ignore[arg-type]
            if table is not None:
                counts[layer][name] = table.to_pyarrow_dataset().count_rows()
    return counts


def cmd_counts(args: argparse.Namespace, out: TextIO) -> int:
    _emit(out, table_counts())
    return 0


def cmd_rejections(args: argparse.Namespace, out: TextIO) -> int:
    from shared import wiring

    _emit(out, wiring.rejections().list(args.flow))
    return 0


def cmd_dry_run(args: argparse.Namespace, out: TextIO) -> int:
    from shared import wiring

    report = wiring.dry_run(Path(args.out) if args.out else None).run(args.map)
    _emit(out, report.to_json())
    return 0


def cmd_reconcile(args: argparse.Namespace, out: TextIO) -> int:
    from shared import wiring
    from shared.services.reconcile import ENTITIES

    report = wiring.reconciler().run(args.entity or ENTITIES, write=not args.no_write)
    _emit(out, report.summary())
    return 1 if report.drift else 0


def cmd_deadletters(args: argparse.Namespace, out: TextIO) -> int:
    from shared import wiring

    tools = wiring.dead_letters()
    if args.action == "list":
        _emit(out, [m.to_json() for m in tools.list_messages(args.queue, limit=args.limit)])
        return 0
    if args.action == "show":
        found = tools.show(args.queue, args.sequence_number)
        if found is None:
            out.write(f"no dead-lettered message {args.sequence_number} in {args.queue}\n")
            return 1
        _emit(out, found.to_json())
        return 0
    ids = set(args.message_id) if args.message_id else None
    _emit(out, {"resubmitted": tools.resubmit(args.queue, message_ids=ids, limit=args.limit)})
    return 0


def load_local_settings(path: Path = Path("local.settings.json")) -> None:
    """Values of local.settings.json become environment variables (never overriding)."""
    if path.exists():
        for key, value in json.loads(path.read_text()).get("Values", {}).items():
            os.environ.setdefault(key, str(value))


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="datahub", description="Contoso Data Hub operator CLI")
    sub = root.add_subparsers(dest="command", required=True)
    jobs = sub.add_parser("jobs", help="list or run a job now")
    jobs_sub = jobs.add_subparsers(dest="action", required=True)
    jobs_sub.add_parser("list")
    run = jobs_sub.add_parser("run")
    run.add_argument("job", choices=JOB_NAMES)
    jobs.set_defaults(run=cmd_jobs)
    backfill = sub.add_parser("backfill", help="re-read a source from a point in time")
    backfill.add_argument("source", choices=["mainframe"])
    backfill.add_argument("--since", type=_parse_instant, required=True)
    backfill.add_argument("--entity", action="append", help="limit to these entities")
    backfill.set_defaults(run=cmd_backfill)
    marks = sub.add_parser("watermarks", help="show or reset watermarks and delta tokens")
    marks_sub = marks.add_subparsers(dest="action", required=True)
    listing = marks_sub.add_parser("list")
    listing.add_argument("--job")
    reset = marks_sub.add_parser("reset")
    reset.add_argument("job")
    reset.add_argument("entity")
    reset.add_argument("--value", help="set to this value instead of forgetting it")
    marks.set_defaults(run=cmd_watermarks)
    gold = sub.add_parser("gold", help="rebuild gold from silver")
    gold.add_argument("action", choices=["rebuild"])
    gold.set_defaults(run=cmd_gold)
    counts = sub.add_parser("counts", help="row counts of silver and gold tables")
    counts.set_defaults(run=cmd_counts)
    rejected = sub.add_parser("rejections", help="what the hub refused, and why")
    rejected.add_argument("--flow")
    rejected.set_defaults(run=cmd_rejections)
    dry = sub.add_parser("dry-run", help="initial sync dry run of a sync map (writes nothing)")
    dry.add_argument("map", choices=list(DRY_RUN_MAPS))
    dry.add_argument("--out", help="report folder (default ./out)")
    dry.set_defaults(run=cmd_dry_run)
    recon = sub.add_parser("reconcile", help="compare counts and content hashes across systems")
    recon.add_argument("--entity", action="append", choices=["quotes", "legacy_orders", "accounts"])
    recon.add_argument("--no-write", action="store_true", help="do not append to gold")
    recon.set_defaults(run=cmd_reconcile)
    dead = sub.add_parser("deadletters", help="list, show or resubmit dead-lettered messages")
    dead_sub = dead.add_subparsers(dest="action", required=True)
    dl_list = dead_sub.add_parser("list")
    dl_list.add_argument("queue")
    dl_list.add_argument("--limit", type=int, default=100)
    dl_show = dead_sub.add_parser("show")
    dl_show.add_argument("queue")
    dl_show.add_argument("sequence_number", type=int)
    dl_resubmit = dead_sub.add_parser("resubmit")
    dl_resubmit.add_argument("queue")
    dl_resubmit.add_argument("--message-id", action="append")
    dl_resubmit.add_argument("--limit", type=int, default=100)
    dead.set_defaults(run=cmd_deadletters)
    return root


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of ``python -m shared.cli`` and the ``datahub`` script."""
    from shared import log as hub_log

    logging.basicConfig(level=os.environ.get("DATAHUB_LOG_LEVEL", "WARNING"), stream=sys.stderr)
    hub_log.install()
    load_local_settings()
    args = parser().parse_args(argv)
    with hub_log.correlation():
        return int(args.run(args, out or sys.stdout))


if __name__ == "__main__":
    raise SystemExit(main())
