"""Self-kill hooks for points inside the hub's own process (test-only; the hub has none).

A hook wraps one named function of the hub in the child process. On the ``nth`` call whose
arguments match, it writes a marker file (so the harness knows which point was reached) and sends
itself SIGKILL, either before the wrapped function runs or right after it returned. SIGKILL cannot
be caught or cleaned up after: no ``finally``, ``atexit`` or buffered write of the hub runs, and
the other threads (bronze uploads, parallel Dataverse chunks) die with the process, exactly as
when a Functions worker is killed.

The hook is described by the ``CRASH_HOOK`` environment variable (JSON, see ``HookSpec``) and
installed by ``tests.crash.runner`` before the hub is imported by the function app.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ENV = "CRASH_HOOK"


@dataclass(frozen=True)
class HookSpec:
    """Kill the process at the ``nth`` matching call of ``target``.

    ``target`` is ``"module:attribute"`` or ``"module:Class.method"``. ``at`` is ``before`` (the
    call never runs) or ``after`` (it ran and returned; whatever it committed stays). ``match``
    maps dotted paths into the bound arguments (``"spec.table"``, ``"job"``) to the values they
    must equal for a call to count. ``marker`` is the file written just before the kill.
    """

    target: str
    at: str
    nth: int = 1
    match: Mapping[str, Any] = field(default_factory=dict)
    marker: str = ""

    def to_env(self) -> str:
        """The ``CRASH_HOOK`` value for this spec."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_env(cls, text: str) -> HookSpec:
        """The inverse of ``to_env``."""
        data = json.loads(text)
        spec = cls(**data)
        if spec.at not in ("before", "after") or spec.nth < 1 or ":" not in spec.target:
            raise ValueError(f"bad crash hook: {text}")
        return spec


def _resolve(target: str) -> tuple[Any, str, Callable[..., Any]]:
    module_name, _, attribute = target.partition(":")
    owner: Any = importlib.import_module(module_name)
    parts = attribute.split(".")
    for part in parts[:-1]:
        owner = getattr(owner, part)
    return owner, parts[-1], getattr(owner, parts[-1])


def _lookup(arguments: Mapping[str, Any], path: str) -> Any:
    head, *rest = path.split(".")
    value = arguments.get(head)
    for part in rest:
        value = getattr(value, part, None)
    return value


def die(marker: str, point: Mapping[str, Any]) -> None:
    """Record the point reached (durably) and SIGKILL this process."""
    if marker:
        with open(marker, "w", encoding="utf-8") as handle:
            json.dump({**point, "pid": os.getpid()}, handle)
            handle.flush()
            os.fsync(handle.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


def install(spec: HookSpec) -> None:
    """Wrap the spec's target in place (for the rest of this process)."""
    owner, name, original = _resolve(spec.target)
    signature = inspect.signature(original)
    lock = threading.Lock()
    seen = 0

    def matches(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        if not spec.match:
            return True
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            return False
        bound.apply_defaults()
        return all(_lookup(bound.arguments, k) == v for k, v in spec.match.items())

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal seen
        fire = False
        if matches(args, kwargs):
            with lock:
                seen += 1
                fire = seen == spec.nth
        point = {"target": spec.target, "at": spec.at, "nth": spec.nth, "match": dict(spec.match)}
        if fire and spec.at == "before":
            die(spec.marker, point)
        result = original(*args, **kwargs)
        if fire:
            die(spec.marker, point)
        return result

    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(owner, name, wrapper)


def install_from_env(environ: Mapping[str, str] | None = None) -> HookSpec | None:
    """Install the hook ``CRASH_HOOK`` describes, if any; returns its spec."""
    text = (environ if environ is not None else os.environ).get(ENV)
    if not text:
        return None
    spec = HookSpec.from_env(text)
    install(spec)
    return spec


def marker_of(path: Path) -> dict[str, Any] | None:
    """The point a killed child recorded, or None when it never reached one."""
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data
