"""Blob reads and deletes. Bodies go out with sendfile when storage is a local folder; from an
object store they are streamed through in 1 MiB pieces, or the client is redirected to a
short-lived presigned URL when the driver is configured for it (``s3_redirect``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from dockyard.api.auditing import audit
from dockyard.api.auth import claims_of
from dockyard.api.http import parse_range
from dockyard.api.state import AUTH, registry_of
from dockyard.registry.errors import RegistryError
from dockyard.registry.hooks import Change
from dockyard.registry.names import validate_name
from dockyard.registry.service import BlobInfo, Registry

STREAM_PIECE = 1 << 20


async def get_blob(request: web.Request) -> web.StreamResponse:
    name = validate_name(request.match_info["name"])
    registry = registry_of(request)
    digest = request.match_info["digest"]
    try:
        info = await registry.stat_blob(name, digest)
    except RegistryError as error:
        if (
            error.code != "BLOB_UNKNOWN"
            or request.method != "HEAD"
            or not await _link_readable_copy(request, name, digest)
        ):
            raise
        info = await registry.stat_blob(name, digest)
    headers = {
        "Docker-Content-Digest": str(info.digest),
        "Content-Type": "application/octet-stream",
        "ETag": f'"{info.digest}"',
        "Accept-Ranges": "bytes",
        "Cache-Control": "max-age=31536000",
    }
    if request.method == "HEAD":
        headers["Content-Length"] = str(info.size)
        return web.Response(status=200, headers=headers)
    range_header = request.headers.get("Range")
    byte_range = parse_range(range_header, info.size) if range_header else None  # 416 as JSON
    sent = info.size if byte_range is None else byte_range[1] - byte_range[0] + 1
    registry.hooks.observed(Change("serve", name, str(info.digest), size=sent))
    small = await registry.small_blob(info)
    if small is not None:
        if byte_range is None:
            return web.Response(body=small, headers=headers)
        start, end = byte_range
        headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
        return web.Response(status=206, body=small[start : end + 1], headers=headers)
    if info.local_path is None:
        url = registry.storage.download_url(info.key)  # signed locally: no request to the store
        if url is not None:
            headers["Location"] = url
            headers["Cache-Control"] = "no-store"  # the URL expires; the digest's bytes do not
            return web.Response(status=307, headers=headers)
        return await _stream(request, registry, info, byte_range, headers)
    # FileResponse does the 206 bookkeeping and uses sendfile. A Range we ignore (malformed,
    # multi-range) is hidden from it so that the whole blob is sent, as RFC 9110 asks.
    ignore_range = bool(range_header) and byte_range is None
    return _BlobFile(info.local_path, ignore_range, chunk_size=1 << 20, headers=headers)


async def _stream(
    request: web.Request,
    registry: Registry,
    info: BlobInfo,
    byte_range: tuple[int, int] | None,
    headers: dict[str, str],
) -> web.StreamResponse:
    """The bytes from a remote store, one piece in memory at a time, with the store asked for the
    requested range only."""
    status = 200
    start, end = 0, info.size - 1
    if byte_range is not None:
        start, end = byte_range
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
    length = end - start + 1
    loop = asyncio.get_running_loop()
    try:
        source = await loop.run_in_executor(registry.pool, registry.storage.reader, info.key, start, length)
    except FileNotFoundError:
        raise RegistryError(
            "BLOB_UNKNOWN", "blob content is missing from storage", {"digest": str(info.digest)}
        ) from None
    try:
        response = web.StreamResponse(status=status, headers={**headers, "Content-Length": str(length)})
        await response.prepare(request)
        left = length
        while left > 0:
            piece = await loop.run_in_executor(registry.pool, source.read, min(STREAM_PIECE, left))
            if not piece:  # the store ended early: cut the connection rather than send a short body
                raise ConnectionError(f"storage ended {left} bytes early for {info.digest}")
            await response.write(piece)
            left -= len(piece)
        await response.write_eof()
        return response
    finally:
        await loop.run_in_executor(registry.pool, source.close)


class _BlobFile(web.FileResponse):
    """FileResponse that can be told to serve the whole file despite a Range header."""

    def __init__(self, path: Path, ignore_range: bool, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self._ignore_range = ignore_range

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self._ignore_range:
            headers = request.headers.copy()
            del headers["Range"]
            request = request.clone(headers=headers)
        return await super().prepare(request)


async def _link_readable_copy(request: web.Request, name: str, digest: str) -> bool:
    """Access-aware deduplication. A client checks with HEAD whether each layer is already
    there before uploading it; when the caller may push here and can read another repository
    holding the blob, link it and answer 200, so shared base layers are never uploaded twice.
    Only with access control on: without it there is no caller to check readability for."""
    claims = claims_of(request)
    if claims is None or not claims.allows("repository", name, "push"):
        return False
    registry = registry_of(request)
    sources = await request.app[AUTH].readable(claims.principal, await registry.repositories_holding(digest))
    return bool(sources) and await registry.mount_blob(name, digest, sources)


async def delete_blob(request: web.Request) -> web.Response:
    name = validate_name(request.match_info["name"])
    await registry_of(request).delete_blob(name, request.match_info["digest"])
    audit(request, "delete", name, request.match_info["digest"])
    return web.Response(status=202, headers={"Content-Length": "0"})


def setup(app: web.Application) -> None:
    path = "/v2/{name:.+}/blobs/{digest}"
    app.router.add_get(path, get_blob)
    app.router.add_delete(path, delete_blob)
