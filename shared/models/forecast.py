"""Sales forecasts the Quoting Tool posts in batches to ``POST /api/forecasts``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from shared.models.common import (
    MAX_FORECAST_SUBMISSIONS,
    Amount,
    Count,
    Email,
    Month,
    Probability,
    TextLine,
    WireModel,
    claim_unique,
    unique_scope,
)

ForecastCategory = Literal["Pipeline", "BestCase", "Committed", "Omitted"]
"""The Dynamics 365 Sales forecast categories."""


class ForecastSubmission(WireModel):
    """One representative's forecast for one territory, month and category.

    ``(salesRep, territory, month, category)`` identifies a submission: a later batch carrying
    the same four replaces the earlier amount, and a batch may name each at most once.
    """

    sales_rep: Email
    territory: Annotated[TextLine, Field(max_length=100)]
    month: Month
    """The forecast month, ``YYYY-MM``."""
    amount: Amount
    """Forecast amount (>= 0, at most 2 decimals): a JSON number or a decimal string."""
    probability: Probability
    category: ForecastCategory

    def identity(self) -> tuple[str, str, str, str]:
        """The key that identifies this submission (the e-mail address compared without case)."""
        return (self.sales_rep.lower(), self.territory, self.month, self.category)

    @model_validator(mode="after")
    def _unique_in_batch(self) -> ForecastSubmission:
        if not claim_unique("forecast", self.identity()):
            raise PydanticCustomError(
                "submission_duplicate",
                "an earlier submission in this batch has the same salesRep, territory, month "
                "and category",
            )
        return self


class ForecastBatch(WireModel):
    """The body of ``POST /api/forecasts``: 1 to 1000 submissions, applied together."""

    submissions: Annotated[
        list[ForecastSubmission], Field(min_length=1, max_length=MAX_FORECAST_SUBMISSIONS)
    ]

    @field_validator("submissions", mode="wrap")
    @classmethod
    def _scoped(cls, value: Any, handler: Callable[[Any], Any]) -> Any:
        with unique_scope("forecast"):
            submissions: list[ForecastSubmission] = handler(value)
        # Submissions passed in as instances are not revalidated and never claimed a key above.
        if len({s.identity() for s in submissions}) != len(submissions):
            raise PydanticCustomError(
                "submission_duplicate",
                "each (salesRep, territory, month, category) may appear once per batch",
            )
        return submissions


class ForecastAccepted(WireModel):
    """The 202 answer to ``POST /api/forecasts``."""

    batch_id: Annotated[str, Field(min_length=1, max_length=64)]
    """The hub's id for this batch; quote it to support."""
    accepted: Count
    """How many submissions were accepted (all of them: a batch is accepted whole or not)."""
    status: Literal["accepted"] = "accepted"
