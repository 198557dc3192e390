"""`python -m sandbox serve`: one JSON line with every endpoint, the app's settings and a test
client; everything it started stops on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import msal
import pytest
import requests

from shared.config import load_settings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent.parent
ENDPOINTS = {
    "entra",
    "keyVault",
    "dataverse",
    "sap",
    "mainframe",
    "quotingTool",
    "blob",
    "queue",
    "table",
}
SAMPLE = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]


def _descendants(pid: int) -> set[int]:
    """Every live process whose parent chain leads to ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _serve(*args: str) -> Iterator[tuple[subprocess.Popen[str], dict]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line, "serve printed nothing"
        yield process, json.loads(line)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[subprocess.Popen[str], dict]]:
    yield from _serve("--app")


def test_first_line_names_every_endpoint_the_hub_and_its_key(served):
    _, descriptor = served
    assert set(descriptor["endpoints"]) == ENDPOINTS | {"hub"}
    assert all(
        url.startswith(("http://127.0.0.1:", "https://127.0.0.1:"))
        for url in descriptor["endpoints"].values()
    )
    assert descriptor["hubKey"]
    assert set(descriptor["testClient"]) == {"tenantId", "clientId", "clientSecret"}


def test_settings_are_exactly_what_the_app_reads_and_validate(served):
    _, descriptor = served
    settings = descriptor["settings"]
    # Then every setting the sample documents is given a value, and nothing else
    assert set(settings) == set(SAMPLE)
    load_settings(settings)


def test_test_client_gets_tokens_and_the_hub_is_ready(served):
    _, descriptor = served
    session = requests.Session()
    session.trust_env = False
    session.verify = descriptor["settings"]["HUB_CA_BUNDLE"]
    client = descriptor["testClient"]
    app = msal.ConfidentialClientApplication(
        client["clientId"],
        client_credential=client["clientSecret"],
        authority=f"{descriptor['endpoints']['entra']}/{client['tenantId']}",
        instance_discovery=False,
        http_client=session,
    )
    dataverse = descriptor["endpoints"]["dataverse"]
    token = app.acquire_token_for_client(scopes=[f"{dataverse}/.default"])["access_token"]
    who = session.get(
        f"{dataverse}/api/data/v9.2/WhoAmI", headers={"Authorization": f"Bearer {token}"}
    )
    assert who.status_code == 200
    health = session.get(f"{descriptor['endpoints']['hub']}/api/health", params={"ready": "1"})
    assert health.json()["status"] == "ready"


def test_sigterm_stops_everything_it_started():
    for process, _ in _serve():
        children = _descendants(process.pid)
        assert children, "Azurite should be running as a child"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [pid for pid in children if _alive(pid)] == []


def test_write_local_settings_writes_the_settings_for_func_start(tmp_path):
    env = dict(os.environ)
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "sandbox" / "__main__.py"), "serve", "--write-local-settings"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env | {"PYTHONPATH": str(ROOT)},
    )
    try:
        assert process.stdout is not None
        descriptor = json.loads(process.stdout.readline())
        written = json.loads((tmp_path / "local.settings.json").read_text())
        assert written["Values"] == descriptor["settings"]
        assert written["IsEncrypted"] is False
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
