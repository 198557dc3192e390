"""Load the Functions app the way the Python worker does, and invoke its functions directly.

The dev HTTP adapter, the local message dispatcher and the demo use this to call the app's real
functions with real trigger objects (``func.HttpRequest``, ``ServiceBusMessage``, ``TimerRequest``),
driven by each function's own binding metadata. It contains no trigger logic of its own.
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func

ROOT = Path(__file__).resolve().parent.parent
_counter = itertools.count()
_SETTING = re.compile(r"^%([^%]+)%$")


@dataclass
class Binding:
    raw: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.raw["name"])

    @property
    def type(self) -> str:
        return str(self.raw["type"])

    @property
    def direction(self) -> str:
        return str(self.raw["direction"]).upper()

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    def resolved(self, key: str, settings: Mapping[str, str]) -> str | None:
        """A binding property with ``%Setting%`` references resolved from ``settings``."""
        value = self.raw.get(key)
        if value is None:
            return None
        match = _SETTING.match(str(value))
        if match:
            name = match.group(1)
            if name not in settings:
                raise KeyError(f"binding {self.name}.{key} references missing setting {name}")
            return settings[name]
        return str(value)


@dataclass
class IndexedFunction:
    name: str
    bindings: list[Binding]
    user_function: Callable[..., Any]

    @property
    def trigger(self) -> Binding:
        return next(b for b in self.bindings if b.type.endswith("Trigger"))

    @property
    def outputs(self) -> list[Binding]:
        return [b for b in self.bindings if b.direction == "OUT" and b.name != "$return"]


class OutValue(func.Out[Any]):
    """Collects what a function sets on an output binding."""

    def __init__(self) -> None:
        self.value: Any = None
        self.is_set = False

    def set(self, val: Any) -> None:
        self.value, self.is_set = val, True

    def get(self) -> Any:
        return self.value


@dataclass
class Invocation:
    result: Any
    outputs: dict[str, Any] = field(default_factory=dict)


def load(app_path: Path = ROOT / "function_app.py") -> list[IndexedFunction]:
    """Import ``function_app.py`` afresh and index its functions (one FunctionApp per call,
    since a FunctionApp can be indexed only once)."""
    if str(app_path.parent) not in sys.path:
        sys.path.insert(0, str(app_path.parent))
    spec = importlib.util.spec_from_file_location(f"_function_app_{next(_counter)}", app_path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    apps = [v for v in vars(module).values() if isinstance(v, func.FunctionRegister)]
    if len(apps) != 1:
        raise ValueError(f"{app_path} must define exactly one FunctionApp, found {len(apps)}")
    return [
        IndexedFunction(
            name=f.get_function_name(),
            bindings=[Binding(json.loads(b)) for b in f.get_raw_bindings()],
            user_function=f.get_user_function(),
        )
        for f in apps[0].get_functions()
    ]


def invoke(function: IndexedFunction, trigger_value: Any) -> Invocation:
    """Call a function with its trigger object; output bindings get collectors."""
    params = inspect.signature(function.user_function).parameters
    kwargs: dict[str, Any] = {}
    outs: dict[str, OutValue] = {}
    trigger = function.trigger.name
    for binding in function.bindings:
        if binding.name == trigger:
            kwargs[trigger] = trigger_value
        elif binding.direction == "OUT" and binding.name != "$return":
            outs[binding.name] = kwargs[binding.name] = OutValue()
    if "context" in params and "context" not in kwargs:
        kwargs["context"] = _Context(function.name)
    result = function.user_function(**kwargs)
    return Invocation(result, {k: v.value for k, v in outs.items() if v.is_set})


class _Context:
    """The subset of ``func.Context`` our functions may read."""

    def __init__(self, name: str) -> None:
        self.function_name = name
        self.invocation_id = os.urandom(16).hex()
        self.function_directory = str(ROOT)
