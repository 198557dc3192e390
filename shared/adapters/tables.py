"""Azure Table storage for the hub's small, strongly consistent state.

One account (the lake's) holds every state table: quote lifecycle and idempotency, couplings,
rejections, watermarks and delta tokens. Tables give per-entity ETags, which is what makes
"only one overlapping run may advance this" and "accept this revision exactly once" safe.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING

from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient, TableServiceClient

from shared.lake.storage import EMULATOR_ACCOUNT, EMULATOR_ACCOUNT_KEY

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential


class Tables:
    """Creates each state table once and hands out clients for it."""

    def __init__(
        self,
        table_url: str,
        *,
        use_emulator: bool,
        credential: TokenCredential | None = None,
        prefix: str = "",
    ) -> None:
        if use_emulator:
            self.service = TableServiceClient(
                endpoint=table_url.rstrip("/"),
                credential=AzureNamedKeyCredential(EMULATOR_ACCOUNT, EMULATOR_ACCOUNT_KEY),
            )
        else:
            if credential is None:
                raise ValueError("a credential is required unless the tables use the emulator")
            self.service = TableServiceClient(endpoint=table_url.rstrip("/"), credential=credential)
        # Table names: alphanumeric, 3-63 characters; tests isolate themselves with a prefix.
        self.prefix = prefix
        self._ready: dict[str, TableClient] = {}
        self._lock = threading.Lock()

    def table(self, name: str) -> TableClient:
        """A client for ``prefix + name``, creating the table on first use."""
        full = f"{self.prefix}{name}"
        with self._lock:
            client = self._ready.get(full)
            if client is None:
                with contextlib.suppress(ResourceExistsError):
                    self.service.create_table(full)
                client = self.service.get_table_client(full)
                self._ready[full] = client
            return client
