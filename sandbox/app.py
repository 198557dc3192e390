"""The Functions app running locally: dev HTTP adapter + local message dispatcher + timers.

What the Functions host does in Azure, reduced to what development and tests need: HTTP
functions are served from their bindings (``sandbox.devhost``), Service Bus output bindings are
delivered to the matching Service Bus triggers (``sandbox.dispatcher``), and timer functions
can be run now by name with a real ``TimerRequest``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.functions.timer import TimerRequest

from sandbox import functions
from sandbox.devhost import DevHost
from sandbox.dispatcher import Dispatcher, QueueBinding
from sandbox.functions import Binding, IndexedFunction

log = logging.getLogger(__name__)


@dataclass
class LocalApp:
    app_path: Path = functions.ROOT / "function_app.py"
    function_key: str | None = None

    def start(self, port: int = 0) -> LocalApp:
        _reset_app_caches()
        settings = dict(os.environ)
        self.functions = functions.load(self.app_path)
        bindings = []
        for fn in self.functions:
            trigger = fn.trigger
            if trigger.type == "serviceBusTrigger":
                bindings.append(
                    QueueBinding(
                        queue=str(trigger.resolved("queueName", settings)),
                        handler=self._handler(fn),
                        sessions=bool(trigger.get("isSessionsEnabled", False)),
                    )
                )
        self.dispatcher = Dispatcher(bindings)
        self.devhost = DevHost(
            self.functions, function_key=self.function_key, on_output=self._on_output
        )
        self.base_url = self.devhost.start(port=port)
        self.function_key = self.devhost.function_key
        return self

    def stop(self) -> None:
        self.devhost.stop()
        stop = getattr(self.dispatcher, "stop", None)
        if stop is not None:
            stop()

    def _on_output(self, fn: IndexedFunction, binding: Binding, value: Any) -> None:
        if binding.type != "serviceBus":
            raise ValueError(f"{fn.name}: output binding type {binding.type} is not emulated")
        queue = str(binding.resolved("queueName", dict(os.environ)))
        for item in value if isinstance(value, list) else [value]:
            send_output(self.dispatcher, queue, item)

    def _handler(self, fn: IndexedFunction) -> Any:
        """Deliver a message to a Service Bus function; its outputs are sent only once it
        succeeded, as the host does."""

        def handle(message: Any) -> None:
            invocation = functions.invoke(fn, message)
            for binding in fn.outputs:
                if binding.name in invocation.outputs:
                    self._on_output(fn, binding, invocation.outputs[binding.name])

        return handle

    def run_timer(self, name: str, *, past_due: bool = False) -> Any:
        """Run a timer-triggered function now, as the host would on its schedule."""
        fn = next(f for f in self.functions if f.name == name)
        if fn.trigger.type != "timerTrigger":
            raise ValueError(f"{name} is not timer-triggered")
        return functions.invoke(fn, TimerRequest(past_due=past_due)).result


def send_output(dispatcher: Dispatcher, queue: str, item: Any) -> None:
    """Turn one output-binding value into a message, the way the Service Bus extension does:
    str/bytes are the body; a dict/list is serialised as JSON."""
    body = item if isinstance(item, (str, bytes)) else json.dumps(item)
    dispatcher.send(queue, body)


def _reset_app_caches() -> None:
    """A new world means new settings: drop what the app cached from an earlier one."""
    from shared.config import get_settings

    get_settings.cache_clear()
    try:
        from shared import wiring
    except ImportError:
        return
    reset = getattr(wiring, "reset", None)
    if reset is not None:
        reset()
