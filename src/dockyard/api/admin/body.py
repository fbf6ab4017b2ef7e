"""Reading and checking request input: JSON bodies, query and path parameters.

Everything a client sends is checked for shape here, before any permission or database work, so
that malformed input is a 400 naming the field, never a 500 from deep inside. Two traps are closed
on the way: ``json.loads`` recurses on nesting (a body of ``[[[[...`` would raise RecursionError),
and JSON strings may hold lone surrogates (``"\\ud800"``) that no database or password hasher can
encode. Unknown fields are refused too, as the OpenAPI document says (``additionalProperties:
false``): a misspelt ``"admn": true`` should fail loudly, not create an ordinary user.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from dockyard.api.admin.common import bad_request

MAX_BODY = 64 * 1024
MAX_TEXT = 1024


async def json_object(request: web.Request, fields: set[str]) -> dict[str, Any]:
    """The body as a JSON object with no keys beyond ``fields``."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise bad_request(f"the request body is larger than {MAX_BODY} bytes")
    raw = await request.read()  # a body without a length is cut off at aiohttp's client_max_size (413)
    if len(raw) > MAX_BODY:
        raise bad_request(f"the request body is larger than {MAX_BODY} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise bad_request("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    unknown = sorted(set(body) - fields)
    if unknown:
        raise bad_request(f"unknown field(s): {', '.join(unknown)}", {"fields": unknown})
    return body


def _checked(value: str, what: str, max_length: int) -> str:
    if len(value) > max_length:
        raise bad_request(f"{what} is longer than {max_length} characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise bad_request(f"{what} is not valid Unicode text") from None
    return value


def text(body: dict[str, Any], key: str, max_length: int = MAX_TEXT) -> str:
    """A required string field."""
    value = body.get(key)
    if value is None:
        raise bad_request(f"missing field {key!r}", {"field": key})
    if not isinstance(value, str):
        raise bad_request(f"field {key!r} must be a string", {"field": key})
    return _checked(value, f"field {key!r}", max_length)


def optional_text(body: dict[str, Any], key: str, max_length: int = MAX_TEXT) -> str | None:
    return None if body.get(key) is None else text(body, key, max_length)


def flag(body: dict[str, Any], key: str, default: bool = False) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise bad_request(f"field {key!r} must be true or false", {"field": key})
    return value


def positive_int(body: dict[str, Any], key: str, maximum: int) -> int | None:
    """An optional integer from 1 to ``maximum`` (null or absent: None). ``true`` is not 1 here."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise bad_request(f"field {key!r} must be an integer from 1 to {maximum}", {"field": key})
    return value


def choice(body: dict[str, Any], key: str, choices: tuple[str, ...], default: str | None = None) -> str:
    value = body.get(key, default)
    if value is None:
        raise bad_request(f"missing field {key!r}", {"field": key})
    if value not in choices:
        raise bad_request(f"field {key!r} must be one of {', '.join(choices)}", {"field": key})
    return value


def query(request: web.Request, key: str) -> str | None:
    """One query parameter, or None when absent; given twice is ambiguous, so a 400."""
    values = request.query.getall(key, [])
    if len(values) > 1:
        raise bad_request(f"query parameter {key!r} is given more than once")
    return _checked(values[0], f"query parameter {key!r}", MAX_TEXT) if values else None


def path(request: web.Request, key: str) -> str:
    return _checked(request.match_info[key], f"path parameter {key!r}", MAX_TEXT)
