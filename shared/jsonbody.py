"""Strict JSON request bodies: media type, size, encoding and syntax checks, exact numbers, and
validation into the wire models with RFC 9457 problem bodies for every refusal.

``parse_json_body`` answers with the status a client needs to fix its request:

- 415 when the media type is not JSON (``application/json`` or ``application/*+json``, with
  ``charset=utf-8`` if a charset is given);
- 413 when the body is larger than allowed;
- 400 when it is not one well-formed JSON text as RFC 8259 defines it for interchange: invalid
  UTF-8, a byte order mark (RFC 8259 §8.1: implementations MUST NOT add one), an empty body,
  trailing data, duplicate object keys (§4: names SHOULD be unique; duplicates are read
  differently by different parsers, which lets two systems see two different quotes), the
  non-standard ``NaN``/``Infinity``, unpaired UTF-16 surrogate escapes (§8.2), or nesting
  deeper than ``MAX_JSON_DEPTH``.

Every JSON number becomes an ``int`` or a ``decimal.Decimal``, never a ``float``; ``validate``
then turns a schema failure into a 422 listing every failing field with its JSON pointer.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
from collections.abc import Iterator
from decimal import Decimal
from itertools import accumulate
from typing import Any

from pydantic import BaseModel, ValidationError

from shared.models.common import MAX_JSON_DEPTH
from shared.problem import problem, validation_problem

JSON_MEDIA_TYPE = "application/json"
MAX_REPORTED_ERRORS = 1000
"""A 422 lists at most this many failing fields; ``errorsOmitted`` counts the rest."""

_MAX_INT_DIGITS = 40
_UTF8_BOM = b"\xef\xbb\xbf"
# A JSON string token: quote, runs of ordinary bytes or escape pairs, then the closing quote or,
# for an unterminated string, the end of input (optionally after one lone backslash). The match
# therefore never fails once it has started: a pattern that can fail at the end would be retried
# from every later quote, which is quadratic on input such as '"\\"\\"\\"...' without an end.
_STRING_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_DEPTH = [0] * 256
for _opening in b"[{":
    _BRACKET_DEPTH[_opening] = 1
for _closing in b"]}":
    _BRACKET_DEPTH[_closing] = -1
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class BodyError(Exception):
    """A request body the hub refuses, with the HTTP status and the problem+json body to send."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(str(body.get("detail") or body["title"]))
        self.problem = body
        self.status = int(body["status"])


def _malformed(detail: str) -> BodyError:
    return BodyError(problem(400, "Malformed JSON", detail, kind="malformed-json"))


class _Refused(ValueError):
    """Raised from inside the JSON parser's hooks; becomes a 400."""


# --- media type ---------------------------------------------------------------------------------


def media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    """The lower-cased ``type/subtype`` of a Content-Type header and its parameters.

    Parameter names are lower-cased and surrounding quotes removed from values; an absent or
    empty header gives ``("", {})``.
    """
    if not content_type:
        return "", {}
    essence, *raw_params = content_type.split(";")
    params: dict[str, str] = {}
    for raw in raw_params:
        name, sep, value = raw.partition("=")
        if sep:
            params[name.strip().lower()] = value.strip().strip('"')
    return essence.strip().lower(), params


def is_json_media_type(content_type: str | None) -> bool:
    """True for ``application/json`` or a ``+json`` subtype, with no charset but UTF-8."""
    essence, params = media_type(content_type)
    kind, _, subtype = essence.partition("/")
    if kind != "application" or not (subtype == "json" or subtype.endswith("+json")):
        return False
    return params.get("charset", "utf-8").lower() == "utf-8"


def unsupported_media_type(expected: str) -> BodyError:
    """The 415 for a body that is not ``expected`` (a media type, named in the detail)."""
    return BodyError(
        problem(
            415,
            "Unsupported media type",
            f"The request body must be {expected}; charset, if given, must be utf-8.",
            kind="unsupported-media-type",
        )
    )


def too_large(size: int, max_bytes: int) -> BodyError:
    """The 413 for a body of ``size`` bytes over a limit of ``max_bytes``."""
    return BodyError(
        problem(
            413,
            "Content too large",
            f"The request body is {size} bytes; the limit is {max_bytes} bytes.",
            kind="content-too-large",
            maxBytes=max_bytes,
        )
    )


# --- parsing ------------------------------------------------------------------------------------


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                name = json.dumps(key[:64])
                raise _Refused(f"duplicate object key {name}; every key must appear once")
            seen.add(key)
    return result


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number; RFC 8259 has no NaN or Infinity")


def _integer(text: str) -> int | Decimal:
    # Python refuses to convert very long digit strings (sys.int_info.default_max_str_digits);
    # a long integer is kept as a Decimal so that range checks in the models refuse it with a 422.
    if len(text) > _MAX_INT_DIGITS:
        return Decimal(text)
    return int(text)


def _check_depth(raw: bytes, limit: int) -> None:
    """Refuse nesting deeper than ``limit`` before parsing: ``json.loads`` recurses once per level.

    Works on the UTF-8 bytes (no byte of a multi-byte character is ASCII, so brackets and quotes
    are found reliably): string tokens are blanked, everything but brackets dropped, and the
    running depth is the prefix sum of +1 per opening and -1 per closing bracket, all in C loops.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return
    brackets = _STRING_TOKEN.sub(b'""', raw).translate(None, _NOT_BRACKET)
    if max(accumulate(map(_BRACKET_DEPTH.__getitem__, brackets)), default=0) > limit:
        raise _malformed(f"JSON nesting is deeper than {limit} levels")


def _walk_strings(value: object) -> Iterator[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def loads(raw: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> object:
    """Parse one strict JSON text from UTF-8 bytes; numbers become ``int`` or ``Decimal``.

    Raises BodyError (400) for anything RFC 8259 does not allow or the hub refuses (see the
    module docstring). Use it for any JSON the hub reads, not only request bodies.
    """
    if raw.startswith(_UTF8_BOM):
        raise _malformed(
            "The body starts with a UTF-8 byte order mark; RFC 8259 forbids it in JSON texts. "
            "Send the JSON without the BOM."
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _malformed(f"The body is not valid UTF-8 (byte offset {exc.start}).") from None
    if not text.strip():
        raise _malformed("The body is empty; a JSON object is required.")
    _check_depth(raw, max_depth)
    try:
        value = json.loads(
            text,
            parse_float=Decimal,
            parse_int=_integer,
            parse_constant=_constant,
            object_pairs_hook=_object,
        )
    except json.JSONDecodeError as exc:
        raise _malformed(f"{exc.msg} at line {exc.lineno} column {exc.colno}.") from None
    except _Refused as exc:
        raise _malformed(str(exc)) from None
    except RecursionError:
        raise _malformed(f"JSON nesting is deeper than {max_depth} levels") from None
    if _SURROGATE_ESCAPE.search(text):
        for item in _walk_strings(value):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise _malformed(
                    "A string contains an unpaired UTF-16 surrogate escape (\\ud800-\\udfff)."
                ) from None
    return value


def parse_json_body(raw: bytes, content_type: str | None, *, max_bytes: int) -> object:
    """Check and parse a JSON request body.

    Raises BodyError with status 415 (not JSON), 413 (over ``max_bytes``) or 400 (not strict
    JSON; see ``loads``). Returns the parsed value, whose numbers are ``int`` or ``Decimal``.
    """
    if not is_json_media_type(content_type):
        raise unsupported_media_type(JSON_MEDIA_TYPE)
    if len(raw) > max_bytes:
        raise too_large(len(raw), max_bytes)
    return loads(raw)


# --- validation ---------------------------------------------------------------------------------


def validate[M: BaseModel](model: type[M], value: object) -> M:
    """Validate a parsed body into ``model`` by its camelCase names only.

    Raises BodyError with a 422 problem listing every failing field with its JSON pointer
    (at most ``MAX_REPORTED_ERRORS``; ``errorsOmitted`` counts the rest). Submitted values are
    never echoed.
    """
    try:
        return model.model_validate(value, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise BodyError(bounded_validation_problem(exc)) from None


def bounded_validation_problem(error: ValidationError) -> dict[str, Any]:
    """``shared.problem.validation_problem`` with the error list capped at
    ``MAX_REPORTED_ERRORS``, so a hostile body cannot make the response explode."""
    body = validation_problem(error)
    errors = body.get("errors", [])
    if len(errors) > MAX_REPORTED_ERRORS:
        body["errors"] = errors[:MAX_REPORTED_ERRORS]
        body["errorsOmitted"] = len(errors) - MAX_REPORTED_ERRORS
    return body


# --- exact output -------------------------------------------------------------------------------


def dumps(value: object) -> str:
    """Compact JSON text with every ``Decimal`` written as an exact JSON number.

    The counterpart of ``loads``: ``loads(dumps(model.model_dump()).encode())`` gives back the
    same values, where pydantic's JSON output would write decimals as strings. Dates and times
    use ISO 8601 / RFC 3339, UUIDs their canonical text. Non-finite numbers raise ValueError.
    """
    parts: list[str] = []
    _encode(value, parts, canonical=False)
    return "".join(parts)


def canonical_json(value: object) -> bytes:
    """One fixed UTF-8 JSON spelling of ``value``, for comparing content (idempotency checks).

    Keys are sorted, numbers lose trailing zeros (``2``, ``2.0`` and ``Decimal("2.00")`` are all
    ``2``; never rounded), aware datetimes are converted to UTC. Two validated models with the
    same values give the same bytes, whatever whitespace, key order or number spelling the
    client sent: hash ``canonical_json(model.model_dump())``.
    """
    parts: list[str] = []
    _encode(value, parts, canonical=True)
    return "".join(parts).encode()


def _canonical_number(value: Decimal) -> str:
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite decimals have an integer exponent
    text = "".join(map(str, digits)).lstrip("0")
    if not text:
        return "0"
    stripped = text.rstrip("0")
    exponent += len(text) - len(stripped)
    prefix = "-" if sign else ""
    return f"{prefix}{stripped}" if exponent == 0 else f"{prefix}{stripped}e{exponent}"


def _encode(value: object, out: list[str], *, canonical: bool) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, int):
        out.append(_canonical_number(Decimal(value)) if canonical else str(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("non-finite decimals have no JSON form")
        exponent = value.as_tuple().exponent
        assert isinstance(exponent, int)  # finite decimals have an integer exponent
        if canonical:
            out.append(_canonical_number(value))
        else:
            # Positional text unless the exponent would spell out an absurd number of zeros.
            out.append(format(value, "f") if abs(exponent) <= 64 else str(value))
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("non-finite floats have no JSON form")
        out.append(repr(value))
    elif isinstance(value, dict):
        items = sorted(value.items()) if canonical else list(value.items())
        out.append("{")
        for index, (key, item) in enumerate(items):
            if not isinstance(key, str):
                raise TypeError("JSON object keys must be strings")
            if index:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _encode(item, out, canonical=canonical)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out, canonical=canonical)
        out.append("]")
    elif isinstance(value, dt.datetime):
        if canonical and value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        out.append(f'"{value.isoformat()}"')
    elif isinstance(value, dt.date):
        out.append(f'"{value.isoformat()}"')
    elif isinstance(value, uuid.UUID):
        out.append(f'"{value}"')
    else:
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")
