"""Blob reads and deletes. Bodies go out with sendfile when storage is a local folder."""

from __future__ import annotations

from aiohttp import web

from dockyard.api.http import parse_range
from dockyard.api.state import registry_of
from dockyard.registry.errors import RegistryError
from dockyard.registry.names import validate_name


async def get_blob(request: web.Request) -> web.StreamResponse:
    name = validate_name(request.match_info["name"])
    info = await registry_of(request).stat_blob(name, request.match_info["digest"])
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
    if range_header:
        parse_range(range_header, info.size)  # 416 in the spec's JSON before any bytes go out
    if info.local_path is None:
        raise RegistryError("UNSUPPORTED", "storage driver cannot serve blobs")
    # FileResponse does the Range/206 bookkeeping and uses sendfile.
    response = web.FileResponse(info.local_path, chunk_size=1 << 20, headers=headers)
    return response


async def delete_blob(request: web.Request) -> web.Response:
    name = validate_name(request.match_info["name"])
    await registry_of(request).delete_blob(name, request.match_info["digest"])
    return web.Response(status=202, headers={"Content-Length": "0"})


def setup(app: web.Application) -> None:
    path = "/v2/{name:.+}/blobs/{digest}"
    app.router.add_get(path, get_blob)
    app.router.add_delete(path, delete_blob)
