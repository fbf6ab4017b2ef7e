"""The API root: clients probe it to learn that this is a v2 registry."""

from aiohttp import web

API_VERSION_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}


async def api_root(request: web.Request) -> web.Response:
    return web.json_response({}, headers=API_VERSION_HEADER)


def setup(app: web.Application) -> None:
    app.router.add_get("/v2/", api_root)
    app.router.add_get("/v2", api_root)
