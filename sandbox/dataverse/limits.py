"""Service protection API limits, per user, as Dataverse enforces them.

Source: powerapps-docs ``api-limits.md``: three facets evaluated per user and web server: the
number of requests and the combined execution time in a 300 s sliding window, and the number of
concurrent requests. Over a limit the Web API answers 429 with ``Retry-After`` (seconds) and one
of three error codes; ``x-ms-ratelimit-burst-remaining-xrm-requests`` and
``x-ms-ratelimit-time-remaining-xrm-requests`` report what is left.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field

from sandbox.dataverse.settings import Settings

REQUESTS_CODE = "0x80072322"
EXECUTION_TIME_CODE = "0x80072321"
CONCURRENCY_CODE = "0x80072326"


@dataclass
class Refusal:
    """Why a request was throttled and when to come back."""

    code: str
    message: str
    retry_after: float


@dataclass
class _User:
    requests: deque[float] = field(default_factory=deque)
    executions: deque[tuple[float, float]] = field(default_factory=deque)
    execution_total: float = 0.0
    in_flight: int = 0


def requests_message(settings: Settings) -> str:
    return (
        f"Number of requests exceeded the limit of {settings.requestLimit} over time window of "
        f"{_number(settings.windowSeconds)} seconds."
    )


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class ServiceProtection:
    """Counts requests, execution time and concurrency per user over the sliding window."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[str, _User] = {}

    def reset(self) -> None:
        with self._lock:
            self._users = {}

    def _prune(self, user: _User, settings: Settings, now: float) -> None:
        horizon = now - settings.windowSeconds
        while user.requests and user.requests[0] <= horizon:
            user.requests.popleft()
        while user.executions and user.executions[0][0] <= horizon:
            user.execution_total -= user.executions.popleft()[1]

    def admit(self, user_id: str, settings: Settings, now: float) -> Refusal | None:
        """Count the request in, or say why it is refused (the request is then not counted)."""
        with self._lock:
            user = self._users.setdefault(user_id, _User())
            self._prune(user, settings, now)
            override = settings.throttleRetryAfterSeconds
            if user.in_flight >= settings.concurrencyLimit:
                return Refusal(
                    CONCURRENCY_CODE,
                    f"Number of concurrent requests exceeded the limit of {settings.concurrencyLimit}.",
                    1.0 if override is None else override,
                )
            if len(user.requests) >= settings.requestLimit:
                wait = user.requests[0] + settings.windowSeconds - now
                return Refusal(
                    REQUESTS_CODE,
                    requests_message(settings),
                    _seconds(wait) if override is None else override,
                )
            if user.execution_total >= settings.executionTimeLimitSeconds:
                wait = (
                    (user.executions[0][0] if user.executions else now)
                    + settings.windowSeconds
                    - now
                )
                limit_ms = f"{int(settings.executionTimeLimitSeconds * 1000):,}"
                return Refusal(
                    EXECUTION_TIME_CODE,
                    f"Combined execution time of incoming requests exceeded limit of {limit_ms} "
                    f"milliseconds over time window of {_number(settings.windowSeconds)} seconds. "
                    "Decrease number of concurrent requests or reduce the duration of requests and "
                    "try again later.",
                    _seconds(wait) if override is None else override,
                )
            user.requests.append(now)
            user.in_flight += 1
            return None

    def release(self, user_id: str, elapsed: float, now: float) -> None:
        with self._lock:
            user = self._users.setdefault(user_id, _User())
            user.in_flight = max(0, user.in_flight - 1)
            user.executions.append((now, elapsed))
            user.execution_total += elapsed

    def headers(self, user_id: str, settings: Settings, now: float) -> dict[str, str]:
        with self._lock:
            user = self._users.setdefault(user_id, _User())
            self._prune(user, settings, now)
            remaining = max(0, settings.requestLimit - len(user.requests))
            seconds = max(0.0, settings.executionTimeLimitSeconds - user.execution_total)
        return {
            "x-ms-ratelimit-burst-remaining-xrm-requests": str(remaining),
            "x-ms-ratelimit-time-remaining-xrm-requests": f"{seconds:.2f}",
        }


def _seconds(wait: float) -> float:
    return float(max(1, math.ceil(wait)))
