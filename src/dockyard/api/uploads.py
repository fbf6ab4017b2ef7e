"""Blob upload endpoints: monolithic, POST-PUT, chunked and streamed PATCH, mounts."""

from __future__ import annotations

from aiohttp import web

from dockyard.api.auth import claims_of
from dockyard.api.http import body_chunks, has_body, parse_content_range
from dockyard.api.state import AUTH, registry_of
from dockyard.registry.errors import RegistryError
from dockyard.registry.names import validate_name
from dockyard.registry.uploads import UploadRangeError

# Clients may send smaller chunks, but fewer, larger ones keep per-request costs down.
CHUNK_MIN_LENGTH = 1 << 20


def _session_headers(name: str, upload_id: str, offset: int) -> dict[str, str]:
    return {
        "Location": f"/v2/{name}/blobs/uploads/{upload_id}",
        # Distribution's convention: "0-0" for an empty upload, else the last byte received.
        "Range": f"0-{max(offset - 1, 0)}",
        "Docker-Upload-UUID": upload_id,
        "OCI-Chunk-Min-Length": str(CHUNK_MIN_LENGTH),
        "Content-Length": "0",
    }


def _created(name: str, digest: str) -> web.Response:
    return web.Response(
        status=201,
        headers={
            "Location": f"/v2/{name}/blobs/{digest}",
            "Docker-Content-Digest": digest,
            "Content-Length": "0",
        },
    )


def _chunk_start(request: web.Request) -> int | None:
    value = request.headers.get("Content-Range")
    if not value:
        return None
    start, end = parse_content_range(value)
    length = request.content_length
    if length is not None and length != end - start + 1:
        raise RegistryError(
            "RANGE_INVALID",
            "Content-Range does not match Content-Length",
            {"Content-Range": value, "Content-Length": length},
        )
    return start


async def _mount_sources(request: web.Request, digest: str) -> list[str] | None:
    """Where a mount may take the blob from: ``from`` if the caller may pull it; without
    ``from``, any repository holding the blob that the caller can read (None: anywhere, when
    access control is off). An empty list makes the client upload, as the spec says."""
    source = request.query.get("from")
    if source is not None:
        validate_name(source)
    claims = claims_of(request)
    if claims is None:
        return None if source is None else [source]
    if source is not None:
        return [source] if claims.allows("repository", source, "pull") else []
    holders = await registry_of(request).repositories_holding(digest)
    return await request.app[AUTH].readable(claims.principal, holders)


async def start_upload(request: web.Request) -> web.Response:
    name = validate_name(request.match_info["name"])
    registry = registry_of(request)
    query = request.query
    mount = query.get("mount")
    if mount and await registry.mount_blob(name, mount, await _mount_sources(request, mount)):
        return _created(name, mount)
    digest = query.get("digest")
    if digest:
        parsed = await registry.upload_monolithic(name, digest, body_chunks(request))
        return _created(name, str(parsed))
    status = await registry.uploads.start(name)
    return web.Response(status=202, headers=_session_headers(name, status.id, 0))


def _with_session_headers(name: str, upload_id: str, error: UploadRangeError) -> RegistryError:
    """A 416 tells the client where the upload really stands, so it can resume from there."""
    error.headers = _session_headers(name, upload_id, error.offset)
    return error


async def patch_upload(request: web.Request) -> web.Response:
    name = validate_name(request.match_info["name"])
    upload_id = request.match_info["uuid"]
    start = _chunk_start(request)
    try:
        status = await registry_of(request).uploads.append(name, upload_id, body_chunks(request), start)
    except UploadRangeError as error:
        raise _with_session_headers(name, upload_id, error) from None
    return web.Response(status=202, headers=_session_headers(name, upload_id, status.offset))


async def finish_upload(request: web.Request) -> web.Response:
    name = validate_name(request.match_info["name"])
    upload_id = request.match_info["uuid"]
    digest = request.query.get("digest")
    if not digest:
        raise RegistryError("DIGEST_INVALID", "the digest query parameter is required")
    start = _chunk_start(request)
    chunks = body_chunks(request) if has_body(request) else None
    try:
        parsed = await registry_of(request).finish_upload(name, upload_id, digest, chunks, start)
    except UploadRangeError as error:
        raise _with_session_headers(name, upload_id, error) from None
    return _created(name, str(parsed))


async def upload_status(request: web.Request) -> web.Response:
    name = validate_name(request.match_info["name"])
    status = await registry_of(request).uploads.status(name, request.match_info["uuid"])
    return web.Response(status=204, headers=_session_headers(name, status.id, status.offset))


async def cancel_upload(request: web.Request) -> web.Response:
    name = validate_name(request.match_info["name"])
    await registry_of(request).uploads.cancel(name, request.match_info["uuid"])
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    for path in ("/v2/{name:.+}/blobs/uploads/", "/v2/{name:.+}/blobs/uploads"):
        app.router.add_post(path, start_upload)
    session = "/v2/{name:.+}/blobs/uploads/{uuid}"
    app.router.add_get(session, upload_status)
    app.router.add_patch(session, patch_upload)
    app.router.add_put(session, finish_upload)
    app.router.add_delete(session, cancel_upload)
