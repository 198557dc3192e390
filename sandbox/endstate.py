"""What the end-state comparisons share: the fault soak (``sandbox/soak.py``) and the crash
harness (``tests/crash/snapshot.py``) both key every silver table by its business key."""

from __future__ import annotations


def silver_keys() -> dict[str, tuple[str, ...]]:
    """Every silver table's business key, from the specs the jobs write them with."""
    from shared.lake import specs
    from shared.services import dataverse_to_lake

    keys: dict[str, tuple[str, ...]] = {}
    for module in (specs, dataverse_to_lake):
        for value in vars(module).values():
            members = value.values() if isinstance(value, dict) else value
            for item in members if isinstance(value, (dict, tuple, list)) else (value,):
                spec = getattr(item, "spec", item)
                if isinstance(spec, specs.EntitySpec):
                    keys[spec.table] = tuple(spec.key)
    return keys
