"""Services: the hub's verbs (``ingest_quote``, ``poll_mainframe``, ...), each idempotent and
depending on ports (``shared.ports``) rather than on concrete adapters."""
