"""A sandbox Dataverse environment (Web API v9.2) for the hub's tests and local runs.

See ``peer.py`` for what it reproduces and ``docs/dataverse-schema.md`` for its tables.
"""

from sandbox.dataverse.peer import DataversePeer

__all__ = ["DataversePeer"]
