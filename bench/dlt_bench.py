"""The lake baseline: dlt merging the same generated records into Delta tables on the same Azurite.

dlt (``requirements-bench.txt``, a bench-only dependency) loads the four mainframe files of
``bench.source`` with ``write_disposition="merge"`` (strategy ``upsert``), ``primary_key`` the
file's business key and ``table_format="delta"``, through its ``filesystem`` destination at
``az://`` on the same Azurite the hub writes to. Two passes, like the hub's:

- ``initial``: every record is new;
- ``changes``: the same tenth of the records changed, upserted into the full tables.

dlt gets the records the way the hub does (page by page, parsed from the same page files) and
does its own work on them: schema inference and normalisation to Parquet in a local working
folder, then a Delta MERGE per table. It does less than the hub: it keeps no raw copy (bronze),
types nothing (every field stays a string), quarantines nothing and builds no gold, so the
like-for-like comparison is dlt's load against the hub's bronze -> silver.

Reaching Azurite: dlt's filesystem client (adlfs) takes the emulator's connection string through
the destination's ``kwargs``, and delta-rs takes ``azure_storage_endpoint`` and ``allow_http``
through ``deltalake_storage_options`` (object_store's ``AzureConfigKey`` names).

    python -m bench.dlt_bench child --pages DIR --blob-url URL --out FILE
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import harness, source

PASSES = ("initial", "changes")
CONTAINER = "dlt"
DATASET = "lake"


def available() -> str | None:
    """dlt's version when it is installed (``make bench`` installs it), else None."""
    try:
        from importlib import metadata

        return metadata.version("dlt")
    except Exception:
        return None


def child(
    pages: Path, blob_url: str, passes: list[str], storage_pid: int | None = None
) -> dict[str, Any]:
    """One dlt run of the given passes over a rendered source (in a fresh process)."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    import deltalake  # noqa: F401
    import dlt
    import polars  # noqa: F401
    import pyarrow  # noqa: F401
    from azure.storage.blob import BlobServiceClient
    from dlt.destinations import filesystem

    from sandbox.azurite import ACCOUNT, ACCOUNT_KEY

    baseline = harness.rss_mib()
    rendered = source.Rendered.load(pages)
    connection = (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint={blob_url};"
    )
    BlobServiceClient.from_connection_string(connection).create_container(CONTAINER)
    destination = filesystem(
        bucket_url=f"az://{CONTAINER}",
        credentials={
            "azure_storage_account_name": ACCOUNT,
            "azure_storage_account_key": ACCOUNT_KEY,
        },
        kwargs={"connection_string": connection},
        deltalake_storage_options={"azure_storage_endpoint": blob_url, "allow_http": "true"},
    )

    def resources(generation: int) -> list[Any]:
        made = []
        for entity, keys in source.KEYS.items():

            def pages_of(entity: str = entity) -> Iterator[list[dict[str, Any]]]:
                yield from source.records(rendered, generation, entity)

            made.append(
                dlt.resource(
                    pages_of,
                    name=entity,
                    primary_key=list(keys),
                    write_disposition={"disposition": "merge", "strategy": "upsert"},
                    table_format="delta",
                )
            )
        return made

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-dlt-") as work:
        pipeline = dlt.pipeline(
            pipeline_name="bench",
            destination=destination,
            dataset_name=DATASET,
            pipelines_dir=work,
        )
        for name in passes:
            generation = 0 if name == "initial" else 1
            records = rendered.total if generation == 0 else rendered.changed
            storage_cpu = harness.process_cpu_seconds(storage_pid) if storage_pid else 0.0
            harness.reset_peak_rss()
            cpu = time.process_time()
            start = time.perf_counter()
            pipeline.run(resources(generation))
            seconds = time.perf_counter() - start
            cpu = time.process_time() - cpu
            if storage_pid:
                storage_cpu = harness.process_cpu_seconds(storage_pid) - storage_cpu
            results[name] = {
                "records": records,
                "seconds": round(seconds, 3),
                "cpu_seconds": round(cpu, 3),
                "storage_cpu_seconds": round(storage_cpu, 3),
                "peak_rss_mib": harness.peak_rss_mib(),
            }
        counts = harness.count_blobs(connection, CONTAINER)
    return {
        "dlt": dlt.__version__,
        "records": rendered.total,
        "baseline_rss_mib": baseline,
        "blobs": sum(counts.values()),
        "passes": results,
    }


def run_once(
    rendered: source.Rendered, passes: tuple[str, ...] = PASSES, *, python: str | None = None
) -> dict[str, Any]:
    """One dlt run in a fresh process on a fresh Azurite."""
    with harness.fresh_azurite() as instance:
        return harness.run_child(
            "bench.dlt_bench",
            [
                "child",
                "--pages",
                str(rendered.folder),
                "--blob-url",
                instance.blob_url,
                "--passes",
                ",".join(passes),
                "--storage-pid",
                str(instance.process.pid),
            ],
            env={"RUNTIME__DLTHUB_TELEMETRY": "false"},
            python=python,
        )


def main(argv: list[str] | None = None) -> int:
    """``child`` runs one measured dlt load (used by ``python -m bench``)."""
    parser = argparse.ArgumentParser(prog="python -m bench.dlt_bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("child", help="one measured run")
    one.add_argument("--pages", type=Path, required=True)
    one.add_argument("--blob-url", required=True)
    one.add_argument("--passes", default=",".join(PASSES))
    one.add_argument("--storage-pid", type=int, default=None)
    one.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    passes = [p for p in args.passes.split(",") if p]
    harness.write_result(args.out, child(args.pages, args.blob_url, passes, args.storage_pid))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
