"""Delta table helpers shared by the silver and gold jobs (delta-rs + polars, imported lazily).

Every table is opened with fresh storage options, so a long job never uses an expired token.
Commits that lose an optimistic-concurrency race (``CommitFailedError``) are retried with
bounded, jittered exponential backoff; the operation is rebuilt each attempt so it runs against
the table's newest version.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.lake.errors import LakeCommitConflictError
from shared.lake.storage import LakeStorage, Layer

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa
    from deltalake import DeltaTable

log = logging.getLogger(__name__)

COMMIT_ATTEMPTS = 8
COMMIT_BASE_DELAY = 0.1
COMMIT_MAX_DELAY = 3.0
_rng = random.Random()  # noqa: S311 - backoff jitter, not security


def open_table(storage: LakeStorage, layer: Layer, table: str) -> DeltaTable | None:
    """The Delta table at ``layer/table``, or None when it does not exist yet."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(
            storage.table_uri(layer, table), storage_options=storage.storage_options()
        )
    except TableNotFoundError:
        return None
    except OSError as exc:
        # delta-rs reports a missing container as a generic object-store error.
        if "ContainerNotFound" in str(exc):
            return None
        raise


def ensure_table(storage: LakeStorage, layer: Layer, table: str, schema: pa.Schema) -> DeltaTable:
    """Open the table, creating it empty with ``schema`` first if it does not exist.

    ``mode="ignore"`` makes a concurrent creation harmless: whoever loses simply opens the table.
    """
    from deltalake import DeltaTable

    storage.ensure_container(layer)
    existing = open_table(storage, layer, table)
    if existing is not None:
        return existing
    return DeltaTable.create(
        storage.table_uri(layer, table),
        schema,
        mode="ignore",
        name=table,
        storage_options=storage.storage_options(),
    )


def create_with_rows(storage: LakeStorage, layer: Layer, table: str, data: pa.Table) -> bool:
    """Create the table holding ``data`` in one commit; False (nothing written) if it exists.

    Why: a first load into a table that does not exist yet needs no MERGE (there is nothing to
    match, and every source row is inserted), and a MERGE costs a table creation commit plus a
    join, about a third of a silver commit's time. ``mode="error"`` refuses a table that already
    exists up front, and ``max_commit_retries=0`` makes the commit of version 0 create-only: of
    two writers racing to create the table, the loser's commit fails instead of being rebased
    onto the winner's as version 1 (delta-rs does rebase a blind write by default, which would
    insert its rows twice; a race test showed it). Either way the caller falls back to its
    MERGE, so the result is the one a MERGE into an empty table gives.
    """
    from deltalake import CommitProperties, write_deltalake
    from deltalake.exceptions import DeltaError

    storage.ensure_container(layer)
    try:
        write_deltalake(
            storage.table_uri(layer, table),
            data,
            mode="error",
            name=table,
            storage_options=storage.storage_options(),
            commit_properties=CommitProperties(max_commit_retries=0),
        )
    except DeltaError:
        # "Already exists" has no exception type of its own (CommitFailedError for a lost race,
        # a plain DeltaError otherwise): the table being there now is the test.
        if open_table(storage, layer, table) is None:
            raise
        return False
    return True


def read_frame(storage: LakeStorage, layer: Layer, table: str) -> pl.DataFrame | None:
    """The whole table as a polars DataFrame, or None when it does not exist."""
    import polars as pl

    delta = open_table(storage, layer, table)
    if delta is None:
        return None
    frame = pl.from_arrow(delta.to_pyarrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


def table_version(storage: LakeStorage, layer: Layer, table: str) -> int | None:
    """The table's current version, or None when it does not exist."""
    delta = open_table(storage, layer, table)
    return None if delta is None else delta.version()


def with_commit_retry[T](
    operation: Callable[[], T],
    what: str,
    *,
    attempts: int = COMMIT_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``operation`` until it commits; retry only lost commit races, a bounded number of times.

    Raises ``LakeCommitConflictError`` (transient) when every attempt lost.
    """
    from deltalake.exceptions import CommitFailedError

    for attempt in range(1, attempts + 1):
        try:
            return operation()
        except CommitFailedError as exc:
            if attempt == attempts:
                raise LakeCommitConflictError(
                    f"{what}: commit still conflicting after {attempts} attempts"
                ) from exc
            ceiling = min(COMMIT_MAX_DELAY, COMMIT_BASE_DELAY * (2 ** (attempt - 1)))
            wait = _rng.uniform(ceiling / 2, ceiling)
            log.warning(
                "%s: concurrent commit won (%s); retry %d/%d in %.2fs",
                what,
                type(exc).__name__,
                attempt,
                attempts - 1,
                wait,
            )
            sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def overwrite_frame(storage: LakeStorage, layer: Layer, table: str, frame: pl.DataFrame) -> bool:
    """Replace a table's content with ``frame`` (schema included); False if it was identical.

    Comparing first keeps a rebuild that changes nothing from adding a table version.
    """
    from deltalake import write_deltalake

    current = read_frame(storage, layer, table)
    if current is not None and current.schema == frame.schema and current.equals(frame):
        return False
    storage.ensure_container(layer)
    data = frame.to_arrow()

    def write() -> None:
        write_deltalake(
            storage.table_uri(layer, table),
            data,
            mode="overwrite",
            schema_mode="overwrite",
            storage_options=storage.storage_options(),
        )

    with_commit_retry(write, f"overwrite {layer}/{table}")
    return True


def append_table(storage: LakeStorage, layer: Layer, table: str, data: pa.Table) -> None:
    """Append rows to a table (created on first use), retrying lost commit races."""
    from deltalake import write_deltalake

    storage.ensure_container(layer)

    def write() -> None:
        write_deltalake(
            storage.table_uri(layer, table),
            data,
            mode="append",
            storage_options=storage.storage_options(),
        )

    with_commit_retry(write, f"append {layer}/{table}")
