"""The dashboard in a real browser: headless Chromium renders GET /api/dashboard from the dev
HTTP adapter after the world ran flows, and saves a screenshot to out/dashboard.png.

The run is demo-like: quotes go through the hub into Dataverse and are qualified or ordered in
SAP, a rep's forecast arrives, the mainframe is polled, and the timers run in their production
order (flow 7, SAP inbound, lake ingest, gold, snapshot). Every gold KPI chart must then have
bars: an empty chart (``data-empty``, "no data yet") fails the test, so a flow that stops feeding
its gold table shows up here rather than as a blank panel in a screenshot.

Chromium is the Debian ``chromium`` package that ``make browser`` (a prerequisite of
``make verify``) installs; this test installs nothing. ``--dump-dom`` prints the DOM after the
page loaded and ``--screenshot`` writes a PNG (both documented headless switches:
https://developer.chrome.com/docs/chromium/headless). The network-quieting switches keep the
browser from calling Google services, so the only request it makes is for the page itself.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from shared import wiring
from tests.fixtures.lake import legacy_customer, legacy_order
from tests.integration.test_quote_flow import qualify_in_dataverse, quote
from tests.integration.test_sap_inbound import (
    SKUS,
    quote_status,
    reset,
    sap_order,
    seed_dataverse,
    seed_sap,
)

pytestmark = pytest.mark.verify

ROOT = Path(__file__).resolve().parents[2]
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,2000",
)
KPI_CHARTS = (
    "Open pipeline by region",
    "Forecast vs goal by region",
    "Quote-to-order conversion by region",
    "Order backlog by plant",
)


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("chromium is not installed: run `make browser` (make verify does)")
    return found


def _browse(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _post(world, http, path: str, body: dict[str, Any]) -> None:
    response = http.post(
        f"{world.hub.base_url}/api/{path}",
        data=json.dumps(body),
        headers={"x-functions-key": world.hub.function_key, "Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 202, response.text


def _seed_region(world, http, region: str, code: str) -> None:
    # A region territory of the test's own: the forecast names it by code, the quotes ship to it.
    territory = {
        "territoryid": str(uuid.uuid4()),
        "contoso_territorycode": code,
        "name": region,
        "contoso_level": 1,
    }
    response = http.post(
        f"{world.endpoints()['dataverse']}/_sandbox/seed", json={"territories": [territory]}
    )
    assert response.status_code == 200, response.text


def _chart(dom: str, title: str) -> str:
    """The rendered SVG of the chart titled ``title``."""
    found = re.search(rf'<svg[^>]*aria-label="{re.escape(title)}".*?</svg>', dom, re.DOTALL)
    assert found is not None, f"chart {title!r} is not on the page"
    return found.group(0)


def test_dashboard_renders_in_headless_chromium_with_the_flows_figures(world, hub_http, tmp_path):
    # Given the mainframe's orders of a plant of this test's own, polled into the lake
    hub_http.post(f"{world.endpoints()['mainframe']}/_sandbox/reset").raise_for_status()
    rng = random.Random()
    plant = f"B{rng.randrange(100, 999)}"
    customer = rng.randrange(1_000_000, 9_999_999)
    first = rng.randrange(10**8, 10**9)
    mainframe = world.peers["mainframe"]
    now = mainframe.now()
    mainframe.seed(
        {
            "customers": [legacy_customer(customer, updated=now)],
            "orders": [
                legacy_order(
                    first + i,
                    plant=plant,
                    customer=f"C{customer:07d}",
                    cents=950_000_000_000,
                    updated=now,
                )
                for i in range(2)
            ],
        }
    )
    # and a region of its own in Dataverse, with the account and products quotes need
    reset(world, hub_http)
    seed_dataverse(world, hub_http)
    tag = uuid.uuid4().hex[:6].upper()
    region = f"Verify {tag}"
    _seed_region(world, hub_http, region, f"R-{tag}")
    wiring.reset()  # the peers were re-seeded: drop the app's cached territory map
    # and two large quotes shipping to that region, posted through the hub into Dataverse
    open_id, ordered_id = f"Q-V{tag}", f"Q-W{tag}"
    for quote_id in (open_id, ordered_id):
        body = quote(quote_id, skus=SKUS)
        body["shipTo"]["region"] = region
        for line in body["lines"]:
            line["unitPrice"] = "9000000000.00"
        _post(world, hub_http, "quotes", body)
    world.hub.dispatcher.run_until_idle()
    # and the first qualified in Sales, the second ordered in SAP
    qualify_in_dataverse(world, hub_http, quote_status(world, hub_http, open_id)["dataverseId"])
    number = str(rng.randrange(10**9, 2 * 10**9))
    seed_sap(world, hub_http, {"A_SalesOrder": [sap_order(number, ordered_id)]})
    # and a rep's forecast for the region
    _post(
        world,
        hub_http,
        "forecasts",
        {
            "submissions": [
                {
                    "salesRep": f"rep.{tag.lower()}@contoso.example",
                    "territory": f"R-{tag}",
                    "month": "2026-12",
                    "amount": "8800000000.00",
                    "probability": "0.7",
                    "category": "Committed",
                }
            ]
        },
    )
    # When the jobs run in their production order, then the snapshot timer
    for timer in (
        "mainframe_poll",
        "dataverse_to_lake",
        "sap_inbound",
        "lake_ingest",
        "gold_rebuild",
        "dashboard_snapshot",
    ):
        world.hub.run_timer(timer)
    url = f"{world.hub.base_url}/api/dashboard?code={world.hub.function_key}"
    # When Chromium loads the page and dumps its DOM
    dumped = _browse(url, tmp_path / "profile-dom", "--dump-dom")
    # Then the rendered DOM has the headline sections and the flow's figures
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = dumped.stdout
    assert "Contoso Data Hub — operations" in dom
    assert "Mainframe poll" in dom
    assert "snapshot taken at" in dom
    # and every gold KPI chart has bars: none is the empty "no data yet" panel
    charts = {title: _chart(dom, title) for title in KPI_CHARTS}
    for title, svg in charts.items():
        assert "data-empty" not in svg and "no data yet" not in svg, f"{title} is empty"
        assert "<rect" in svg, f"{title} has no bars"
    # and the bars carry this run's figures: the plant's backlog (2 x 9,500,000,000.00), the
    # region's open pipeline (the qualified quote: 2 lines x 2 x 9e9 less 5 %), its forecast,
    # and its conversion (one of its two quotes was ordered)
    backlog = charts["Order backlog by plant"]
    assert plant in backlog and "19,000,000,000.00" in backlog
    pipeline = charts["Open pipeline by region"]
    assert region in pipeline and "34,200,000,000.00" in pipeline
    forecast = charts["Forecast vs goal by region"]
    assert region in forecast and "8,800,000,000.00" in forecast
    conversion = charts["Quote-to-order conversion by region"]
    assert region in conversion and "50.0% (1 of 2 quotes)" in conversion
    # When Chromium takes a screenshot of it
    out = ROOT / "out"
    out.mkdir(exist_ok=True)
    shot = out / "dashboard.png"
    shot.unlink(missing_ok=True)
    taken = _browse(url, tmp_path / "profile-shot", f"--screenshot={shot}")
    # Then a PNG of the page is saved
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
