"""SAP S/4HANA OData V2 for the sandbox (see ``sandbox.sap.peer`` and ``docs/sap-api.md``)."""

from sandbox.sap.peer import AUDIENCE, SapPeer

__all__ = ["AUDIENCE", "SapPeer"]
