"""Environment settings the control surface can change (``PUT /_sandbox/settings`` or a
``{"_settings": [{...}]}`` seed).

Defaults are Dataverse's documented ones: 6,000 requests and 1,200 s of combined execution time
per user in a 300 s sliding window, 52 concurrent requests (powerapps-docs ``api-limits.md``);
5,000 rows per page (``webapi/query/page-results.md``); delta tokens valid for 7 days
(``use-change-tracking-synchronize-data-external-systems.md``: Organization
``ExpireChangeTrackingInDays``). ``maxBulkTargets`` and ``dopHint`` are the sandbox's choices:
Dataverse publishes no hard cap on ``Targets`` (it recommends starting around 1,000), and its
``x-ms-dop-hint`` value depends on the environment.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from sandbox.dataverse.schema import BULK_MESSAGES


@dataclass
class Settings:
    """Tunable behaviour of one sandbox Dataverse environment."""

    requestLimit: int = 6000
    windowSeconds: float = 300.0
    executionTimeLimitSeconds: float = 1200.0
    concurrencyLimit: int = 52
    # Retry-After for service-protection 429s; None computes it from the sliding window.
    throttleRetryAfterSeconds: float | None = None
    dopHint: int = 4
    maxBulkTargets: int = 1000
    maxBatchRequests: int = 1000
    defaultPageSize: int = 5000
    deltaTokenMaxAgeSeconds: float = 7 * 24 * 3600.0
    # sandbox-only: time each admitted request spends "executing", so benchmarks and tests can
    # exercise the concurrency and execution-time limits the way a busy environment would
    executionDelayMs: int = 0
    # per logical name: the bulk messages the table supports, overriding schema.json
    bulkSupport: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, body: dict[str, Any], base: Settings | None = None) -> Settings:
        """Apply ``body`` on top of ``base`` (or the defaults), refusing unknown or bad values."""
        known = {f.name for f in fields(cls)}
        unknown = set(body) - known
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        merged = {**asdict(base or cls()), **body}
        settings = cls(**merged)
        for name in (
            "requestLimit",
            "concurrencyLimit",
            "dopHint",
            "maxBulkTargets",
            "maxBatchRequests",
            "defaultPageSize",
        ):
            value = getattr(settings, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer")
        for name in ("windowSeconds", "executionTimeLimitSeconds", "deltaTokenMaxAgeSeconds"):
            value = getattr(settings, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be a non-negative number")
        delay = settings.executionDelayMs
        if isinstance(delay, bool) or not isinstance(delay, int) or not 0 <= delay <= 60_000:
            raise ValueError("executionDelayMs must be an integer within 0..60000")
        retry = settings.throttleRetryAfterSeconds
        if retry is not None and (
            isinstance(retry, bool) or not isinstance(retry, int | float) or retry < 0
        ):
            raise ValueError("throttleRetryAfterSeconds must be a non-negative number or null")
        if not isinstance(settings.bulkSupport, dict):
            raise ValueError("bulkSupport must map logical names to lists of messages")
        for table, messages in settings.bulkSupport.items():
            if not isinstance(messages, list) or not set(messages) <= set(BULK_MESSAGES):
                raise ValueError(
                    f"bulkSupport[{table!r}] must list messages from {list(BULK_MESSAGES)}"
                )
        return settings

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
