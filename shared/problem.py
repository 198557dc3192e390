"""RFC 9457 problem details, built from the same pydantic errors the handlers raise."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

PROBLEM_CONTENT_TYPE = "application/problem+json"
_BASE = "https://contoso.example/problems/"


def json_pointer(loc: tuple[int | str, ...]) -> str:
    """RFC 6901 pointer for a pydantic error location."""
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in loc]
    return "/" + "/".join(parts) if parts else ""


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    kind: str | None = None,
    **extensions: Any,
) -> dict[str, Any]:
    """A problem+json body. ``kind`` names the problem type (defaults from the title)."""
    body: dict[str, Any] = {
        "type": _BASE + (kind or title.lower().replace(" ", "-")),
        "title": title,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body.update({k: v for k, v in extensions.items() if v is not None})
    return body


def validation_problem(
    error: ValidationError, *, prefix: tuple[int | str, ...] = ()
) -> dict[str, Any]:
    """422 listing every failing field with its JSON pointer; inputs are never echoed."""
    errors = [
        {"pointer": json_pointer(prefix + tuple(e["loc"])), "detail": e["msg"], "code": e["type"]}
        for e in error.errors(include_input=False, include_url=False)
    ]
    return problem(
        422,
        "Validation failed",
        f"{len(errors)} field(s) failed validation",
        kind="validation",
        errors=errors,
    )
