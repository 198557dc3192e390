"""GET /api/dashboard over real HTTP: the page the operators look at, after real flows ran.

The world serves function_app.py through the dev HTTP adapter; the mainframe poll timer fills
silver and gold in the world's Azurite, the ``dashboard_snapshot`` timer writes the gold figures
to ``gold/dashboard/snapshot.json``, and the page is fetched with the function key. The world is
shared by the session, so the test plants figures of its own (a plant, a rejection flow, a
reconciliation run) and looks for those.
"""

from __future__ import annotations

import datetime as dt
import html
import random
import re
import uuid

import pytest

from shared.adapters.records import RejectionStore
from shared.adapters.tables import Tables
from shared.lake.storage import LakeConfig, LakeStorage
from shared.services.dashboard import NO_NAMESPACE, read_snapshot
from shared.services.reconcile import PairResult, ReconcileReport, write_gold
from tests.fixtures.lake import legacy_customer, legacy_order

pytestmark = pytest.mark.integration

# Any attribute that makes a browser fetch something (src, href, srcset, action, poster, data,
# xlink:href) pointing at another origin would break "self-contained".
EXTERNAL = re.compile(
    r"""(?:src|href|srcset|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE
)


@pytest.fixture
def dashboard_world(world, hub_http):
    hub_http.post(f"{world.endpoints()['mainframe']}/_sandbox/reset").raise_for_status()
    return world


def test_dashboard_shows_jobs_rejections_parity_and_gold_kpis_without_external_assets(
    dashboard_world, hub_http
):
    world = dashboard_world
    rng = random.Random()
    lake = LakeStorage(LakeConfig(blob_url=world.azurite.blob_url, use_emulator=True))
    rejections = RejectionStore(Tables(world.azurite.table_url, use_emulator=True))
    # Given three open orders of a plant of this test's own, far bigger than any other test's
    plant = f"D{rng.randrange(100, 999)}"
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
                    cents=900_000_000_000,
                    updated=now,
                )
                for i in range(3)
            ],
        }
    )
    # and a rejection under a flow whose name needs HTML escaping
    flow = f"dash-<i>{uuid.uuid4().hex[:8]}"
    rejections.record(flow, "k-1", "invalid", "a planted rejection")
    # and a reconciliation run with a drift
    run_at = dt.datetime.now(dt.UTC)
    write_gold(
        lake,
        ReconcileReport(
            run_at, pairs=[PairResult("quotes", "quotingtool", "dataverse", 7919, 7918)]
        ),
    )
    # When the mainframe poll runs (it rebuilds gold) and then the snapshot timer
    world.hub.run_timer("mainframe_poll")
    world.hub.run_timer("dashboard_snapshot")
    response = hub_http.get(
        f"{world.hub.base_url}/api/dashboard",
        headers={"x-functions-key": world.hub.function_key},
        timeout=60,
    )
    # Then the page is HTML that says when the snapshot was taken
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    page = response.text
    snapshot = read_snapshot(lake)
    assert snapshot is not None
    assert html.escape(snapshot.taken_at) in page
    # and it shows the plant's backlog (3 × 9,000,000,000.00) in the backlog chart
    assert plant in page
    assert "27,000,000,000.00" in page
    # and the mainframe poll job ran, with the gold integration health of its entities
    assert "Mainframe poll" in page and "<td>mainframe</td><td>orders</td>" in page
    mainframe_row = page.split("Mainframe poll", 1)[1].split("</tr>", 1)[0]
    assert "never run" not in mainframe_row
    # and the planted rejection's flow, escaped
    assert html.escape(flow) in page and flow not in page
    # and the reconciliation parity of the planted run
    assert "7,919" in page and "7,918" in page
    # and dead letters are honestly unknown (the sandbox has no Service Bus namespace)
    assert NO_NAMESPACE in page
    # and nothing on the page loads from elsewhere: no script, no external reference
    assert "<script" not in page.lower()
    assert EXTERNAL.findall(page) == []
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_dashboard_requires_the_function_key(world, hub_http):
    # Given no function key
    # When the dashboard is requested
    response = hub_http.get(f"{world.hub.base_url}/api/dashboard", timeout=30)
    # Then the host refuses it (AuthLevel FUNCTION)
    assert response.status_code == 401
