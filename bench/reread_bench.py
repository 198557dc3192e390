"""Changed-only polling against a full re-read, on an unchanged 100k-record mainframe.

Target (issue 9): polling an unchanged source costs 1 listing request (per entity) and writes 0
blobs. The baseline is what a job without watermarks does every time: read every page of every
file, write it to bronze and MERGE it (which then changes nothing).

The sandbox mainframe peer (``sandbox/mainframe.py``, the LOS gateway's contract over HTTPS)
serves the generated records from the parent process; the hub's ``MainframeClient`` and
``poll_mainframe`` run in a child process, so the peer's own work (it sorts its file for every
page) never competes with the hub for the child's interpreter. Per poll the child counts:

- requests: from the peer's own log (``GET /_sandbox/requests``), listing and token requests;
- bytes read: the bodies of the peer's answers, summed by a ``requests`` response hook;
- blobs written: the lake's blobs counted on Azurite before and after.

    python -m bench.reread_bench --records 100000 --repeats 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import harness, source
from bench.report import Row, spread_text

CLIENT_ID = "bench-hub"
CLIENT_SECRET = "bench-secret"
CONTAINER_PREFIX = "reread-"
OVERLAP = dt.timedelta(seconds=120)


def _peer_requests(http: Any, url: str) -> dict[str, int]:
    log = http.get(f"{url}/_sandbox/requests", timeout=30).json()["requests"]
    return {
        "listing": sum(1 for r in log if r["path"].startswith("/los/v1/")),
        "token": sum(1 for r in log if r["path"].startswith("/auth/token")),
    }


def child(
    mainframe: str, ca: Path, blob_url: str, table_url: str, repeats: int, page_size: int
) -> dict[str, Any]:
    """Poll once to fill the lake, then ``repeats`` x (changed-only poll, full re-read)."""
    import requests

    from bench.lake_bench import _connection_string
    from shared.adapters.mainframe import MainframeClient
    from shared.adapters.state import WatermarkStore
    from shared.http import make_session
    from shared.lake.storage import LakeConfig, LakeStorage
    from shared.services.poll_mainframe import ENTITIES, JOB, poll_mainframe

    received = {"bytes": 0}

    def count(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        received["bytes"] += len(response.content)

    session = make_session(ca)
    session.hooks["response"].append(count)
    control = make_session(ca)
    client = MainframeClient(mainframe, CLIENT_ID, lambda: CLIENT_SECRET, session=session)
    storage = LakeStorage(
        LakeConfig(blob_url, use_emulator=True, container_prefix=CONTAINER_PREFIX)
    )
    storage.ensure_containers()
    watermarks = WatermarkStore.connect(table_url, use_emulator=True, table_name="benchreread")
    connection = _connection_string(blob_url)

    def measured() -> dict[str, Any]:
        requests_before = _peer_requests(control, mainframe)
        blobs_before = sum(harness.count_blobs(connection, CONTAINER_PREFIX).values())
        bytes_before = received["bytes"]
        start = time.perf_counter()
        result = poll_mainframe(client, watermarks, storage, overlap=OVERLAP, page_size=page_size)
        seconds = time.perf_counter() - start
        requests_after = _peer_requests(control, mainframe)
        blobs_after = sum(harness.count_blobs(connection, CONTAINER_PREFIX).values())
        return {
            "records": result.read,
            "listing_requests": requests_after["listing"] - requests_before["listing"],
            "token_requests": requests_after["token"] - requests_before["token"],
            "bytes_read": received["bytes"] - bytes_before,
            "blobs_written": blobs_after - blobs_before,
            "seconds": round(seconds, 3),
            "entities": len(result.entities),
        }

    first = measured()
    samples: dict[str, list[dict[str, Any]]] = {"changed_only": [], "full_reread": []}
    for _ in range(repeats):
        samples["changed_only"].append(measured())
        for entity in ENTITIES:
            watermarks.reset(JOB, entity)
        samples["full_reread"].append(measured())
    return {"first_load": first, **samples}


def run(records: int, repeats: int, page_size: int = 1000) -> dict[str, Any]:
    """Serve ``records`` generated records from the mainframe peer and measure both polls."""
    from sandbox import tls as tls_mod
    from sandbox.mainframe import MainframePeer

    with tempfile.TemporaryDirectory(prefix="bench-reread-") as tmp:
        rendered = source.render(Path(tmp) / "pages", records, page_size)
        tls = tls_mod.create(Path(tmp) / "tls")
        peer = MainframePeer(tls=tls, page_size_max=page_size)
        url = peer.start()
        try:
            peer.register_client(CLIENT_ID, CLIENT_SECRET)
            for entity in source.KEYS:
                peer.seed(
                    {entity: [r for page in source.records(rendered, 0, entity) for r in page]}
                )
            with harness.fresh_azurite() as instance:
                result = harness.run_child(
                    "bench.reread_bench",
                    [
                        "child",
                        "--mainframe",
                        url,
                        "--ca",
                        str(tls.ca_path),
                        "--blob-url",
                        instance.blob_url,
                        "--table-url",
                        instance.table_url,
                        "--repeats",
                        str(repeats),
                        "--page-size",
                        str(page_size),
                    ],
                )
        finally:
            peer.stop()
    result["records"] = records
    return result


def rows(result: dict[str, Any]) -> list[Row]:
    """Requests, bytes and blobs of the changed-only poll beside the full re-read's."""
    records = result["records"]
    section = f"Changed-only poll of an unchanged {records:,}-record mainframe"
    idle, full = result["changed_only"], result["full_reread"]
    entities = idle[0]["entities"]

    def of(samples: list[dict[str, Any]], key: str) -> list[float]:
        return [float(s[key]) for s in samples]

    per_entity = [s["listing_requests"] / s["entities"] for s in idle]
    full_requests = of(full, "listing_requests")
    return [
        Row.of(
            "listing requests per entity",
            per_entity,
            "requests",
            section=section,
            baseline=(
                f"full re-read: {spread_text(full_requests, 'requests')} over {entities} entities"
            ),
            target="1 request",
            met=lambda v: v == 1,
            shown=lambda v: f"{v:g} ({entities * v:g} for {entities} entities)",
            details={
                "requests": of(idle, "listing_requests"),
                "token_requests": of(idle, "token_requests"),
            },
        ),
        Row.of(
            "blobs written",
            of(idle, "blobs_written"),
            "blobs",
            section=section,
            baseline=f"full re-read: {spread_text(of(full, 'blobs_written'), 'blobs')}",
            target="0 blobs",
            met=lambda v: v == 0,
        ),
        Row.of(
            "bytes read",
            of(idle, "bytes_read"),
            "bytes",
            section=section,
            baseline=f"full re-read: {spread_text(of(full, 'bytes_read'), 'bytes')}",
        ),
        Row.of(
            "wall time of the poll",
            of(idle, "seconds"),
            "s",
            section=section,
            baseline=f"full re-read: {spread_text(of(full, 'seconds'), 's')}",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    """``child`` is the measured side (run by ``run``); without it, run and print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.reread_bench", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    one = sub.add_parser("child", help="the measured polls (used by the parent)")
    one.add_argument("--mainframe", required=True)
    one.add_argument("--ca", type=Path, required=True)
    one.add_argument("--blob-url", required=True)
    one.add_argument("--table-url", required=True)
    one.add_argument("--repeats", type=int, default=3)
    one.add_argument("--page-size", type=int, default=1000)
    one.add_argument("--out", type=Path, required=True)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.command == "child":
        figures = child(
            args.mainframe, args.ca, args.blob_url, args.table_url, args.repeats, args.page_size
        )
        harness.write_result(args.out, figures)
        return 0
    sys.stdout.write(json.dumps(run(args.records, args.repeats), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
