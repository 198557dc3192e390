"""The error vocabulary every adapter and service speaks.

Services decide retry versus reject from the type alone: a TransientError may succeed later
(throttling, 5xx, timeouts), a PermanentError never will (bad data, unknown reference,
a state that forbids the change) and must be recorded as rejected with its reason.
"""

from __future__ import annotations


class HubError(Exception):
    """Base of the hub's own errors. Messages never carry secrets or tokens."""


class TransientError(HubError):
    """A failure that may succeed on a later attempt."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(HubError):
    """A failure that no retry can fix; the input is rejected with a reason."""

    def __init__(self, message: str, *, code: str = "rejected") -> None:
        super().__init__(message)
        self.code = code


class SettingsError(HubError):
    """One or more settings are missing or invalid; the message names every one of them."""
