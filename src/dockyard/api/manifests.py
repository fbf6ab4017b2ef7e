"""Manifest endpoints: push, pull with content negotiation, delete by tag or digest."""

from __future__ import annotations

from aiohttp import web

from dockyard.api.auditing import actor_of, audit
from dockyard.api.http import read_limited
from dockyard.api.state import registry_of
from dockyard.registry.digest import looks_like_digest
from dockyard.registry.hooks import Change
from dockyard.registry.manifests import MAX_MANIFEST_SIZE
from dockyard.registry.names import validate_name


def _accepted(request: web.Request) -> set[str] | None:
    values = request.headers.getall("Accept", [])
    types = {part.split(";")[0].strip() for value in values for part in value.split(",")}
    types.discard("")
    if not types or "*/*" in types:
        return None
    return types


async def get_manifest(request: web.Request) -> web.Response:
    name = validate_name(request.match_info["name"])
    reference = request.match_info["reference"]
    manifest = await registry_of(request).get_manifest(name, reference, _accepted(request))
    if request.method == "GET":  # a pull, as Docker Hub counts them; HEADs are existence checks
        audit(request, "pull", name, reference, detail=manifest.digest)
        tags = () if looks_like_digest(reference) else (reference,)
        registry_of(request).hooks.observed(
            Change("pull", name, manifest.digest, tags, manifest.media_type, len(manifest.content), actor_of(request))
        )
    return web.Response(
        body=manifest.content,
        headers={
            "Content-Type": manifest.media_type,
            "Docker-Content-Digest": manifest.digest,
            "ETag": f'"{manifest.digest}"',
        },
    )


async def put_manifest(request: web.Request) -> web.Response:
    name = validate_name(request.match_info["name"])
    reference = request.match_info["reference"]
    content = await read_limited(request, MAX_MANIFEST_SIZE)
    result = await registry_of(request).put_manifest(
        name,
        reference,
        content,
        request.headers.get("Content-Type", ""),
        request.query.getall("tag", []),
        actor_of(request),
    )
    audit(request, "push", name, reference, detail=result.digest)
    headers = {
        "Location": f"/v2/{name}/manifests/{result.digest}",
        "Docker-Content-Digest": result.digest,
        "Content-Length": "0",
    }
    if result.subject:
        headers["OCI-Subject"] = result.subject
    return web.Response(status=201, headers=headers)


async def delete_manifest(request: web.Request) -> web.Response:
    name = validate_name(request.match_info["name"])
    await registry_of(request).delete_manifest(name, request.match_info["reference"], actor_of(request))
    audit(request, "delete", name, request.match_info["reference"])
    return web.Response(status=202, headers={"Content-Length": "0"})


def setup(app: web.Application) -> None:
    path = "/v2/{name:.+}/manifests/{reference}"
    app.router.add_get(path, get_manifest)
    app.router.add_put(path, put_manifest)
    app.router.add_delete(path, delete_manifest)
