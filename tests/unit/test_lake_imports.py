"""Import discipline: the lake's light modules never pull in deltalake, pyarrow or polars.

HTTP and Service Bus functions import ``shared.lake.bronze`` (raw request intake) and the
services; loading the heavy libraries there would slow every cold start. A fresh interpreter is
the only honest way to see what an import drags in, hence the subprocess (the one exception to
"no processes" in unit tests, asked for by the lake issue).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("deltalake", "pyarrow", "polars")
PROBE = f"""
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))
"""


def _heavy_modules_after_importing(*modules: str) -> list[str]:
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, *modules],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "module",
    [
        "shared.lake",
        "shared.lake.bronze",
        "shared.lake.storage",
        "shared.lake.specs",
        "shared.adapters.state",
        "shared.services.poll_mainframe",
        "shared.services.pricing",
        "shared.services.availability",
        "shared.services.forecasts",
        "shared.services.archive",
        "blueprints.pricing",
        "blueprints.forecasts",
        "blueprints.archive",
        "shared.mappings",
        "shared.services.load_dataverse",
        "shared.services.dataverse_to_lake",
        "shared.services.lake_jobs",
        "shared.wiring",
        "blueprints.lake_jobs",
        "blueprints.quotes",
        "shared.services.quotes",
        "blueprints.urgent_orders",
        "shared.services.urgent_orders",
        "blueprints.sap_batches",
        "shared.services.sap_inbound",
        "shared.services.sap_outbound",
        "shared.sync.engine",
        "blueprints.reconcile",
        "shared.services.reconcile",
        "shared.services.dry_run",
        "blueprints.dashboard",
        "shared.services.dashboard",
        "function_app",
    ],
)
def test_light_module_imports_no_heavy_library(module):
    # Given a fresh interpreter
    # When only the module is imported
    loaded = _heavy_modules_after_importing(module)
    # Then none of deltalake, pyarrow or polars is in sys.modules
    assert loaded == []


def test_even_the_lake_jobs_defer_heavy_imports_until_called():
    # Given the modules that run the silver and gold jobs
    # When they are imported but nothing is called
    loaded = _heavy_modules_after_importing(
        "shared.lake.silver", "shared.lake.gold", "shared.lake.delta", "shared.lake.runs"
    )
    # Then the heavy libraries are still not loaded
    assert loaded == []


def test_probe_detects_a_heavy_import():
    # Given the probe itself (so the tests above cannot pass vacuously)
    # When a heavy library is imported directly
    loaded = _heavy_modules_after_importing("polars")
    # Then the probe reports it
    assert loaded == ["polars"]


def test_function_app_does_not_load_the_service_bus_sdk():
    # Given a fresh interpreter (the Service Bus SDK is only for the operator's dead-letter tools;
    # triggers and output bindings are the host's, so loading it would only slow cold start)
    probe = "import sys, function_app; print(sorted(m for m in sys.modules if m.startswith('azure.servicebus')))"
    # When the app is imported
    completed = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    # Then azure.servicebus is not among the loaded modules
    assert completed.stdout.strip().splitlines()[-1] == "[]"
