"""The hub's typed HTTP contract: pydantic v2 models, camelCase on the wire, money as Decimal.

Parse request bodies with ``shared.jsonbody`` (never ``model_validate_json``, whose parser reads
JSON numbers as binary floats) and write exact JSON with ``shared.jsonbody.dumps``.
"""

from shared.models.archive import ArchiveLine, ArchiveLineError, ArchiveResult
from shared.models.common import (
    MAX_ARCHIVE_BYTES,
    MAX_BODY_BYTES,
    MAX_CONFIGURATION_KEYS,
    MAX_FORECAST_SUBMISSIONS,
    MAX_JSON_DEPTH,
    MAX_NOTES_CHARS,
    MAX_QUOTE_LINES,
    FieldError,
    Health,
    HealthCheck,
    Problem,
    WireModel,
)
from shared.models.forecast import ForecastAccepted, ForecastBatch, ForecastSubmission
from shared.models.pricing import Availability, PlantAvailability, PriceListEntry, PricingPage
from shared.models.quote import (
    Address,
    ApprovedLine,
    Configuration,
    LifecycleStep,
    Quote,
    QuoteAccepted,
    QuoteLine,
    QuoteStatus,
    Rejection,
)

__all__ = [
    "MAX_ARCHIVE_BYTES",
    "MAX_BODY_BYTES",
    "MAX_CONFIGURATION_KEYS",
    "MAX_FORECAST_SUBMISSIONS",
    "MAX_JSON_DEPTH",
    "MAX_NOTES_CHARS",
    "MAX_QUOTE_LINES",
    "Address",
    "ApprovedLine",
    "ArchiveLine",
    "ArchiveLineError",
    "ArchiveResult",
    "Availability",
    "Configuration",
    "FieldError",
    "ForecastAccepted",
    "ForecastBatch",
    "ForecastSubmission",
    "Health",
    "HealthCheck",
    "LifecycleStep",
    "PlantAvailability",
    "PriceListEntry",
    "PricingPage",
    "Problem",
    "Quote",
    "QuoteAccepted",
    "QuoteLine",
    "QuoteStatus",
    "Rejection",
    "WireModel",
]
