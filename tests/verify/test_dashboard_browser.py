"""The dashboard in a real browser: headless Chromium renders GET /api/dashboard from the dev
HTTP adapter after the world ran flows, and saves a screenshot to out/dashboard.png.

Chromium is the Debian ``chromium`` package that ``make browser`` (a prerequisite of
``make verify``) installs; this test installs nothing. ``--dump-dom`` prints the DOM after the
page loaded and ``--screenshot`` writes a PNG (both documented headless switches:
https://developer.chrome.com/docs/chromium/headless). The network-quieting switches keep the
browser from calling Google services, so the only request it makes is for the page itself.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.lake import legacy_customer, legacy_order

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
    world.hub.run_timer("mainframe_poll")
    world.hub.run_timer("dashboard_snapshot")
    url = f"{world.hub.base_url}/api/dashboard?code={world.hub.function_key}"
    # When Chromium loads the page and dumps its DOM
    dumped = _browse(url, tmp_path / "profile-dom", "--dump-dom")
    # Then the rendered DOM has the headline sections and the flow's figures
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = dumped.stdout
    assert "Contoso Data Hub — operations" in dom
    assert "Mainframe poll" in dom
    assert plant in dom and "19,000,000,000.00" in dom
    assert "Order backlog by plant" in dom
    assert "snapshot taken at" in dom
    assert "<svg" in dom
    # When Chromium takes a screenshot of it
    out = ROOT / "out"
    out.mkdir(exist_ok=True)
    shot = out / "dashboard.png"
    shot.unlink(missing_ok=True)
    taken = _browse(url, tmp_path / "profile-shot", f"--screenshot={shot}")
    # Then a PNG of the page is saved
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
