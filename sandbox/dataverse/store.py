"""The sandbox environment's rows: per-table dicts, alternate-key indexes, a change log, undo.

Writes are O(1) per row (dict lookups for the primary key and every alternate key), so 10,000-row
loads stay cheap. Key indexes compare strings case-insensitively, as Dataverse's SQL collation
does: ``A-1`` and ``a-1`` are the same key.

The change log (version, id, deleted) per table serves change tracking: rows changed after a
delta token's version are found by bisecting the log rather than scanning the table.

``transaction()`` gives changesets and bulk messages their all-or-nothing behaviour: the first
touch of a row saves its previous state; a failure restores every saved row, the key indexes,
the change logs and the version counter.
"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sandbox.dataverse.schema import Key, Schema, Table

Row = dict[str, Any]
KeyTuple = tuple[Any, ...]


def _normalize(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


class TableData:
    """Rows of one table plus its indexes and change log."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.rows: dict[str, Row] = {}
        self.indexes: dict[str, dict[KeyTuple, str]] = {k.name: {} for k in table.keys}
        self.log_versions: list[int] = []
        self.log: list[tuple[str, bool]] = []

    def key_tuple(self, key: Key, row: Row) -> KeyTuple | None:
        """The normalized key of a row, or None when any key column is empty (not indexed)."""
        values = []
        for column in key.columns:
            value = row.get(self.table.columns[column].read_name)
            if value is None:
                return None
            values.append(_normalize(value))
        return tuple(values)

    def _index(self, row_id: str, row: Row) -> None:
        for key in self.table.keys:
            kt = self.key_tuple(key, row)
            if kt is not None:
                self.indexes[key.name][kt] = row_id

    def _unindex(self, row_id: str, row: Row) -> None:
        for key in self.table.keys:
            kt = self.key_tuple(key, row)
            if kt is not None and self.indexes[key.name].get(kt) == row_id:
                del self.indexes[key.name][kt]


@dataclass
class _Txn:
    version: int
    originals: dict[tuple[str, str], Row | None] = field(default_factory=dict)
    log_lengths: dict[str, int] = field(default_factory=dict)


class Store:
    """All tables of the environment. Callers hold the peer's data lock around every use."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.tables = {name: TableData(table) for name, table in schema.tables.items()}
        # Dataverse row versions are large, ever-growing numbers; start somewhere plausible.
        self.version = 1_000_000
        self._stack: list[_Txn] = []

    def data(self, logical_name: str) -> TableData:
        return self.tables[logical_name]

    def next_version(self) -> int:
        self.version += 1
        return self.version

    # ---- reads --------------------------------------------------------------------------------
    def get(self, logical_name: str, row_id: str) -> Row | None:
        return self.tables[logical_name].rows.get(row_id)

    def find(self, logical_name: str, key: Key, values: dict[str, Any]) -> str | None:
        """The id of the row whose alternate key equals ``values`` (keyed by column name)."""
        data = self.tables[logical_name]
        kt = tuple(_normalize(values[c]) for c in key.columns)
        return data.indexes[key.name].get(kt)

    def conflicting_key(self, logical_name: str, row_id: str, row: Row) -> Key | None:
        """The first alternate key whose value another row already holds."""
        data = self.tables[logical_name]
        for key in data.table.keys:
            kt = data.key_tuple(key, row)
            if kt is None:
                continue
            holder = data.indexes[key.name].get(kt)
            if holder is not None and holder != row_id:
                return key
        return None

    def changes_between(
        self, logical_name: str, since: int, until: int
    ) -> tuple[list[str], list[str]]:
        """Ids whose last change in (since, until] was a write (in change order) or a delete."""
        data = self.tables[logical_name]
        start = bisect.bisect_right(data.log_versions, since)
        end = bisect.bisect_right(data.log_versions, until)
        last: dict[str, bool] = {}
        for row_id, deleted in data.log[start:end]:
            last.pop(row_id, None)
            last[row_id] = deleted
        upserted = [i for i, d in last.items() if not d and i in data.rows]
        deleted = [i for i, d in last.items() if d and i not in data.rows]
        return upserted, deleted

    # ---- writes -------------------------------------------------------------------------------
    def put(self, logical_name: str, row_id: str, row: Row) -> None:
        """Insert or replace a row (its ``versionnumber`` already stamped)."""
        data = self.tables[logical_name]
        self._touch(logical_name, row_id)
        old = data.rows.get(row_id)
        if old is not None:
            data._unindex(row_id, old)
        data.rows[row_id] = row
        data._index(row_id, row)
        data.log_versions.append(int(row["versionnumber"]))
        data.log.append((row_id, False))

    def delete(self, logical_name: str, row_id: str) -> None:
        data = self.tables[logical_name]
        self._touch(logical_name, row_id)
        old = data.rows.pop(row_id)
        data._unindex(row_id, old)
        data.log_versions.append(self.next_version())
        data.log.append((row_id, True))

    def clear(self) -> None:
        for name, table in self.schema.tables.items():
            self.tables[name] = TableData(table)
        self._stack = []

    # ---- transactions -------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside succeed together or are undone together.

        A nested call is a savepoint: its failure undoes only its own writes, so a failing
        change set inside a ``$batch`` leaves the batch's other operations in place.
        """
        txn = _Txn(self.version)
        self._stack.append(txn)
        try:
            yield
        except BaseException:
            self._rollback(txn)
            raise
        else:
            if len(self._stack) > 1:
                outer = self._stack[-2]
                for key, original in txn.originals.items():
                    outer.originals.setdefault(key, original)
                for name, length in txn.log_lengths.items():
                    outer.log_lengths.setdefault(name, length)
        finally:
            self._stack.pop()

    def _touch(self, logical_name: str, row_id: str) -> None:
        if not self._stack:
            return
        txn = self._stack[-1]
        data = self.tables[logical_name]
        txn.log_lengths.setdefault(logical_name, len(data.log))
        txn.originals.setdefault((logical_name, row_id), data.rows.get(row_id))

    def _rollback(self, txn: _Txn) -> None:
        for (logical_name, row_id), original in txn.originals.items():
            data = self.tables[logical_name]
            current = data.rows.pop(row_id, None)
            if current is not None:
                data._unindex(row_id, current)
            if original is not None:
                data.rows[row_id] = original
                data._index(row_id, original)
        for logical_name, length in txn.log_lengths.items():
            data = self.tables[logical_name]
            del data.log[length:]
            del data.log_versions[length:]
        self.version = txn.version
