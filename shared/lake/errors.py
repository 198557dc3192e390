"""Errors raised by the lake, in the hub's transient/permanent vocabulary."""

from __future__ import annotations

from shared.errors import HubError, PermanentError, TransientError


class BronzeConflictError(PermanentError):
    """A bronze blob with this name exists and holds different content.

    Bronze names are deterministic per run and page, so a different payload under the same name
    means two writers disagree about what was received; overwriting would destroy evidence.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, code="bronze_conflict")


class LakeCommitConflictError(TransientError):
    """A Delta commit kept losing to concurrent writers after the bounded retries."""


class LakeSchemaError(HubError):
    """A lake table exists but its columns do not match what the job needs."""
