"""The OpenAPI 3.1 document of the admin API, kept in the repository as ``api/openapi.json``.

It is written by hand and checked against the routes by the tests (every route documented, every
documented path routed) and against the running server by a schema-driven fuzz test; the web UI
and any other client are generated from it or read it. Served as read from the package, so what a
client downloads is exactly the reviewed file.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from aiohttp import web


@cache
def document_bytes() -> bytes:
    return resources.files("dockyard.api").joinpath("openapi.json").read_bytes()


def document() -> dict[str, Any]:
    return json.loads(document_bytes())


async def get_openapi(request: web.Request) -> web.Response:
    """No authentication: the document describes the API, it holds nothing about its data."""
    return web.Response(body=document_bytes(), content_type="application/json")


ROUTES = [("GET", "/openapi.json", get_openapi)]
