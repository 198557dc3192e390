"""Sync rules as data (``rules``), the engine that applies them (``engine``) and echo
suppression (``echo``) for the SAP batches (flows 10 and 11); see ``docs/sync-rules.md``."""
