"""Ports: the small ``typing.Protocol`` interfaces services depend on.

Adapters in ``shared/adapters`` satisfy them structurally; tests may pass fakes of these ports.
Keep each protocol to what its callers actually use.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol


class ChangePage(Protocol):
    """One page of a changed-only listing."""

    @property
    def records(self) -> Sequence[Mapping[str, Any]]:
        """The raw records, exactly as the source sent them."""
        ...

    @property
    def asof(self) -> dt.datetime:
        """The source's clock (UTC) at the listing's first page: the next watermark."""
        ...


class MainframeChangeSource(Protocol):
    """Changed-only listings of the legacy mainframe (``docs/mainframe-api.md``)."""

    def list_changes(
        self, entity: str, since: dt.datetime | None, page_size: int = ...
    ) -> Iterator[ChangePage]:
        """Pages of records whose last update is strictly after ``since`` (all when None)."""
        ...


class WatermarkPort(Protocol):
    """ETag-guarded watermarks (``shared.adapters.state.WatermarkStore``)."""

    def read(self, job: str, entity: str) -> tuple[str | None, str | None]:
        """``(value, etag)``; ``(None, None)`` when never set."""
        ...

    def advance(
        self,
        job: str,
        entity: str,
        new_value: str,
        etag: str | None,
        *,
        run_id: str | None = None,
    ) -> str:
        """Move the watermark only if unchanged since read; returns the new ETag.

        Raises ``shared.adapters.state.WatermarkConflictError`` when another run moved it.
        """
        ...
