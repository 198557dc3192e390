"""Validation of Azure Functions timer schedules (six-field NCRONTAB)."""

from __future__ import annotations

import re

_FIELDS = (
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 6),
)
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    )
}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
_TIMESPAN = re.compile(r"^(\d+\.)?\d{1,2}:\d{2}(:\d{2})?$")


def _value(token: str, field: int) -> int:
    names = _MONTHS if field == 4 else _DAYS if field == 5 else {}
    if token.upper() in names:
        return names[token.upper()]
    if not token.isdigit():
        raise ValueError(f"{_FIELDS[field][0]} field: {token!r} is not a number")
    value = int(token)
    _, low, high = _FIELDS[field]
    if not low <= value <= high:
        raise ValueError(f"{_FIELDS[field][0]} field: {value} is outside {low}-{high}")
    return value


def validate_ncrontab(expression: str) -> str:
    """Return the expression unchanged if it is a valid six-field NCRONTAB, else raise ValueError.

    Why our own check: the host rejects a bad schedule only at start-up in Azure, which is far
    too late to find out; this lets settings validation and the indexing test catch it.
    """
    parts = expression.split()
    if len(parts) != 6:
        if _TIMESPAN.match(expression.strip()):
            raise ValueError("TimeSpan schedules only work on App Service plans; use NCRONTAB")
        raise ValueError(
            f"NCRONTAB needs 6 fields (second minute hour day month day-of-week), got {len(parts)}"
        )
    for field, part in enumerate(parts):
        for item in part.split(","):
            base, _, step = item.partition("/")
            if step and (not step.isdigit() or int(step) == 0):
                raise ValueError(f"{_FIELDS[field][0]} field: bad step {step!r}")
            if base == "*":
                continue
            low_s, dash, high_s = base.partition("-")
            low = _value(low_s, field)
            if dash and _value(high_s, field) < low:
                raise ValueError(f"{_FIELDS[field][0]} field: range {base!r} runs backwards")
    return expression
