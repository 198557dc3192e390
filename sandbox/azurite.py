"""Azurite (the Azure Storage emulator) as a child process with blob, queue and table services."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
# Azurite's published well-known development key: not a secret.
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
_LISTENING = re.compile(r"Azurite (Blob|Queue|Table) service is successfully listening at (\S+)")


@dataclass
class Azurite:
    """A running Azurite. ``stop()`` ends it and every process it started."""

    process: subprocess.Popen[str]
    blob: str
    queue: str
    table: str

    @property
    def blob_url(self) -> str:
        return f"{self.blob}/{ACCOUNT}"

    @property
    def queue_url(self) -> str:
        return f"{self.queue}/{ACCOUNT}"

    @property
    def table_url(self) -> str:
        return f"{self.table}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_url};QueueEndpoint={self.queue_url};TableEndpoint={self.table_url};"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


def executable() -> Path:
    path = ROOT / "node_modules" / ".bin" / "azurite"
    if not path.exists():
        raise RuntimeError("Azurite is not installed: run `make setup` (npm ci) first")
    return path


def start(
    location: Path | None = None,
    *,
    blob_port: int = 0,
    queue_port: int = 0,
    table_port: int = 0,
    timeout: float = 20.0,
) -> Azurite:
    """Start Azurite and wait until it listens; in memory when ``location`` is None, else
    persisted in that folder."""
    launch = spawn(location, blob_port=blob_port, queue_port=queue_port, table_port=table_port)
    return launch.wait(timeout)


def spawn(
    location: Path | None = None,
    *,
    blob_port: int = 0,
    queue_port: int = 0,
    table_port: int = 0,
) -> Launch:
    """Launch Azurite without waiting; ``wait()`` on the result (node takes seconds to start,
    so the sandbox starts its peers meanwhile)."""
    args = [
        str(executable()),
        "--skipApiVersionCheck",
        "--disableTelemetry",
        "--silent",
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(blob_port),
        "--queueHost",
        "127.0.0.1",
        "--queuePort",
        str(queue_port),
        "--tableHost",
        "127.0.0.1",
        "--tablePort",
        str(table_port),
    ]
    if location is None:
        args.append("--inMemoryPersistence")
    else:
        location.mkdir(parents=True, exist_ok=True)
        args += ["--location", str(location)]
    process = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so stop() reaches node's children too
    )
    return Launch(process)


@dataclass
class Launch:
    process: subprocess.Popen[str]

    def wait(self, timeout: float = 20.0) -> Azurite:
        return _wait(self.process, timeout)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=5)


def _wait(process: subprocess.Popen[str], timeout: float) -> Azurite:
    found: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while len(found) < 3:
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError(f"Azurite did not start (found {sorted(found)})")
        line = process.stdout.readline()
        match = _LISTENING.search(line)
        if match:
            found[match.group(1).lower()] = match.group(2).rstrip("/")
    # keep draining stdout so Azurite never blocks on a full pipe
    threading.Thread(target=lambda: [None for _ in process.stdout or []], daemon=True).start()
    return Azurite(process, found["blob"], found["queue"], found["table"])
