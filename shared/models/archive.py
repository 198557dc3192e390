"""Long-term archive records posted as NDJSON to ``POST /api/quotes/archive``: one closed quote
or completed job per line."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from shared.models.common import (
    MAX_DESCRIPTION_CHARS,
    AccountNumber,
    Count,
    CurrencyCode,
    Email,
    FieldError,
    IsoDate,
    Money,
    MultiLineText,
    QuoteId,
    TextLine,
    WireModel,
)

ArchiveRecordType = Literal["quote", "job"]
ArchiveStatus = Literal["won", "lost", "canceled", "expired", "completed"]

_STATUSES: dict[str, frozenset[str]] = {
    "quote": frozenset({"won", "lost", "canceled", "expired"}),
    "job": frozenset({"completed", "canceled"}),
}
MAX_REPORTED_LINE_ERRORS = 1000


class ArchiveLine(WireModel):
    """One archived quote or job.

    A record is identified by ``(recordType, quoteId, jobId)``; posting it again replaces the
    stored copy, so an upload can be repeated safely. ``jobId`` is required for a job and must
    be absent for a quote. A quote closes as won, lost, canceled or expired; a job as completed
    or canceled.
    """

    record_type: ArchiveRecordType
    quote_id: QuoteId
    job_id: (
        Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9._-]+$")] | None
    ) = None
    account_number: AccountNumber
    closed_on: IsoDate
    """The day the quote closed or the job finished."""
    amount: Money
    """Final value as a decimal string, e.g. ``"1234.50"``."""
    currency: CurrencyCode
    status: ArchiveStatus
    sales_rep: Email | None = None
    description: Annotated[MultiLineText, Field(max_length=MAX_DESCRIPTION_CHARS)] | None = None
    source_system: Annotated[TextLine, Field(max_length=40)] | None = None
    """The system the record was exported from, e.g. ``legacy-quoting``."""

    @model_validator(mode="after")
    def _consistent_with_record_type(self) -> ArchiveLine:
        # Cross-field rules, reported at the field they concern (a bare ValueError here would
        # point at the whole line).
        problems: list[InitErrorDetails] = []
        if self.record_type == "job" and self.job_id is None:
            problems.append(
                _error("jobId", "missing", "jobId is required for a job record", self.job_id)
            )
        if self.record_type == "quote" and self.job_id is not None:
            problems.append(
                _error("jobId", "job_id_forbidden", "jobId must be absent for a quote record", None)
            )
        allowed = _STATUSES[self.record_type]
        if self.status not in allowed:
            problems.append(
                _error(
                    "status",
                    "status_for_type",
                    f"status of a {self.record_type} record should be one of: "
                    + ", ".join(sorted(allowed)),
                    None,
                )
            )
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self


def _error(field: str, code: str, message: str, value: object) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError(code, message), loc=(field,), input=value)


class ArchiveLineError(WireModel):
    """Why one line of an archive upload was refused."""

    line: Annotated[int, Field(ge=1)]
    """1-based line number in the upload."""
    errors: list[FieldError]
    """The failing fields of that line; pointers are relative to the line's JSON object."""


class ArchiveResult(WireModel):
    """The answer to an archive upload: valid lines are stored, invalid ones reported."""

    received: Count
    """Non-blank lines in the upload."""
    accepted: Count
    rejected: Count
    errors: list[ArchiveLineError]
    """Rejected lines in order, at most 1000."""
    errors_truncated: bool = False
    """True when more lines were rejected than ``errors`` lists."""
