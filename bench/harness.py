"""What the benchmarks share: child processes, fresh storage, memory readings, blob counts.

Every measured run happens in a fresh child process (``python -m bench.<module> ...``) on a
fresh Azurite, so runs do not warm each other's caches, a run's peak memory is its own, and the
storage is equally empty for the hub and for its baseline. The child writes its figures as JSON
to a file the parent names; its logging goes to stderr, which the parent keeps for errors.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sandbox import azurite
from sandbox.azurite import Azurite

ROOT = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT = 3600.0


class ChildFailed(RuntimeError):
    """A benchmark child process exited with an error."""


def _status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    found = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.MULTILINE)
    if found is None:  # pragma: no cover - Linux always reports these
        raise RuntimeError(f"/proc/self/status has no {field}")
    return int(found.group(1))


def rss_mib() -> float:
    """This process's resident memory now, in MiB."""
    return round(_status_kib("VmRSS") / 1024, 1)


def peak_rss_mib() -> float:
    """This process's resident-memory high-water mark (since start or the last reset), in MiB."""
    return round(_status_kib("VmHWM") / 1024, 1)


def reset_peak_rss() -> None:
    """Start a new high-water mark from the current resident memory.

    Writing ``5`` to ``/proc/self/clear_refs`` resets ``VmHWM`` (Linux ``proc(5)``), which lets
    one process report the peak of each phase separately.
    """
    Path("/proc/self/clear_refs").write_text("5")


@contextlib.contextmanager
def fresh_azurite() -> Iterator[Azurite]:
    """A new, empty, in-memory Azurite for one run; stopped afterwards."""
    instance = azurite.start()
    try:
        yield instance
    finally:
        instance.stop()


def run_child(
    module: str,
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    python: str | None = None,
    timeout: float = CHILD_TIMEOUT,
) -> dict[str, Any]:
    """Run ``python -m <module> <args> --out <file>`` and return the JSON it wrote."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        out = Path(tmp) / "result.json"
        command = [python or sys.executable, "-m", module, *args, "--out", str(out)]
        started = time.perf_counter()
        done = subprocess.run(
            command,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0 or not out.exists():
            tail = "\n".join(done.stderr.splitlines()[-30:])
            raise ChildFailed(f"{module} {' '.join(args)} exited {done.returncode}:\n{tail}")
        result: dict[str, Any] = json.loads(out.read_text())
        result.setdefault("child_seconds", round(time.perf_counter() - started, 3))
        return result


def write_result(path: Path, result: dict[str, Any]) -> None:
    """A child's last act: its figures, as JSON, where the parent asked."""
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")


def count_blobs(connection_string: str, containers_prefix: str = "") -> dict[str, int]:
    """Blobs per container (those whose name starts with ``containers_prefix``)."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(connection_string)
    found: dict[str, int] = {}
    for container in service.list_containers(name_starts_with=containers_prefix or None):
        client = service.get_container_client(container.name)
        found[container.name] = sum(1 for _ in client.list_blobs())
    return found


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its waited-for children (``proc(5)`` stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ticks / os.sysconf("SC_CLK_TCK")
