"""Every secret and token the sandbox hands out, kept so that logs and files can be searched.

The hub must never write a secret or a token into a log line, an error body or an ``out/`` file
(docs/reliability.md, "Secrets"). Searching for them needs the values themselves, and only the
sandbox knows them all: the peers call :func:`record` at the moment they issue one (an Entra JWT,
a mainframe token, a registered client secret) and the world records what it configures (Key Vault
secrets, the Service Bus key, the function keys).

The registry is process-wide on purpose, and only grows: a test session starts peers from many
fixtures, all of them issue into the same process, and the session's log is searched for all of
them at its end (``tests/fixtures/log_capture.py``). :func:`dump` writes it to a file for a
search in another process (``make demo`` writes ``.sandbox/demo/issued-secrets.txt``); the file
holds live sandbox secrets, so it belongs in the sandbox's state directory, never under ``out/``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

# Shorter values would match by chance; nothing the sandbox issues is this short.
MIN_LENGTH = 8

_lock = threading.Lock()
_issued: dict[str, str] = {}


def record(kind: str, value: str | None) -> None:
    """Remember ``value`` (issued or configured by the sandbox) under a kind such as ``entra-jwt``.

    A value recorded twice keeps its first kind; values shorter than :data:`MIN_LENGTH` are not
    kept because searching for them would report coincidences.
    """
    if value and len(value) >= MIN_LENGTH:
        with _lock:
            _issued.setdefault(value, kind)


def snapshot() -> dict[str, str]:
    """Every value recorded so far, mapped to its kind (a copy)."""
    with _lock:
        return dict(_issued)


def kinds() -> dict[str, int]:
    """How many values of each kind were recorded (safe to print: holds no value)."""
    return kinds_of(snapshot())


def kinds_of(issued: Mapping[str, str]) -> dict[str, int]:
    """How many values of each kind ``{value: kind}`` holds."""
    counts: dict[str, int] = {}
    for kind in issued.values():
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


def dump(path: Path) -> int:
    """Write every recorded value to ``path`` as ``kind<TAB>value`` lines; returns the count.

    The file is created readable by its owner only: it holds the sandbox's live secrets.
    """
    issued = snapshot()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text("".join(f"{kind}\t{value}\n" for value, kind in issued.items()), "utf-8")
    return len(issued)


def load(path: Path) -> dict[str, str]:
    """Read a file written by :func:`dump` back into ``{value: kind}``."""
    issued: dict[str, str] = {}
    for line in path.read_text("utf-8").splitlines():
        kind, sep, value = line.partition("\t")
        if sep and value:
            issued.setdefault(value, kind)
    return issued
