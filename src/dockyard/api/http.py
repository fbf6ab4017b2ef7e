"""Header parsing and body streaming shared by the route modules."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from dockyard.registry.errors import RegistryError

_CONTENT_RANGE_RE = re.compile(r"(?:bytes[ =])?([0-9]{1,19})-([0-9]{1,19})(?:/(?:[0-9]{1,19}|\*))?")
_RANGE_RE = re.compile(r"bytes=([0-9]{0,19})-([0-9]{0,19})")
_BODY_ERRORS = (
    aiohttp.ClientPayloadError,
    aiohttp.http_exceptions.HttpProcessingError,
    ConnectionError,
    asyncio.IncompleteReadError,
    EOFError,
)


def parse_content_range(value: str) -> tuple[int, int]:
    """An upload chunk's ``Content-Range`` (spec form ``<start>-<end>``, inclusive)."""
    match = _CONTENT_RANGE_RE.fullmatch(value.strip())
    if not match:
        raise RegistryError("RANGE_INVALID", "malformed Content-Range", {"Content-Range": value})
    start, end = int(match[1]), int(match[2])
    if end < start:
        raise RegistryError("RANGE_INVALID", "Content-Range ends before it starts", {"Content-Range": value})
    return start, end


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """A single-range ``Range: bytes=a-b`` against a blob of ``size`` bytes.

    Returns the inclusive (start, end) to serve, None when the header should be ignored
    (unparseable or multi-range: we then serve the whole blob, as RFC 9110 allows), or raises
    RANGE_INVALID (416) when the range cannot be satisfied.
    """
    match = _RANGE_RE.fullmatch(value.strip().replace(" ", ""))
    if not match or (not match[1] and not match[2]):
        return None
    if not match[1]:  # suffix range: the last N bytes
        length = int(match[2])
        if length == 0 or size == 0:
            raise _unsatisfiable(size)
        return max(size - length, 0), size - 1
    start = int(match[1])
    end = int(match[2]) if match[2] else None
    if end is not None and end < start:
        return None
    if start >= size:
        raise _unsatisfiable(size)
    return start, size - 1 if end is None else min(end, size - 1)


def _unsatisfiable(size: int) -> RegistryError:
    return RegistryError("RANGE_INVALID", detail={"size": size}, headers={"Content-Range": f"bytes */{size}"})


def parse_limit(request: web.Request, default: int | None, maximum: int) -> int | None:
    raw = request.query.get("n")
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise RegistryError("PAGINATION_NUMBER_INVALID", detail={"n": raw})
    return min(int(raw), maximum)


def has_body(request: web.Request) -> bool:
    return bool(request.content_length) or request.headers.get("Transfer-Encoding", "").lower() == "chunked"


async def body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    """The request body in the pieces the server read (up to 1 MiB each).

    ``readchunk`` hands over the buffered pieces as they are, where ``iter_chunked`` and
    ``iter_any`` join them first; the upload code batches pieces for hashing and ``writev``, so
    a join here would be a wasted copy of every byte. A body cut short becomes a client error.
    """
    content = request.content
    try:
        while True:
            data, _ = await content.readchunk()
            if data:
                yield data
            elif content.at_eof():
                return
    except _BODY_ERRORS as exc:
        raise RegistryError(
            "SIZE_INVALID", "request body ended before its declared length", {"error": str(exc)}
        ) from None


async def read_limited(request: web.Request, limit: int) -> bytes:
    """Read a small body (a manifest) whole, refusing it early when it is over ``limit``."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(request.content_length, limit)
    parts: list[bytes] = []
    total = 0
    async for chunk in body_chunks(request):
        total += len(chunk)
        if total > limit:
            raise _too_large(total, limit)
        parts.append(chunk)
    return b"".join(parts)


def _too_large(size: int, limit: int) -> RegistryError:
    return RegistryError(
        "SIZE_INVALID", f"manifest is larger than the {limit} byte limit", {"size": size, "limit": limit}, status=413
    )


def next_link(path: str, limit: int, last: str) -> str:
    return f'<{path}?n={limit}&last={last}>; rel="next"'
