"""Every failure leaves as the spec's JSON error body, never a traceback."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from aiohttp import web

from dockyard.registry.errors import RegistryError

log = logging.getLogger("dockyard.api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(error: RegistryError) -> web.Response:
    body = json.dumps({"errors": [error.as_dict()]}).encode()
    headers = {k: v for k, v in error.headers.items() if k.lower() != "content-length"}
    return web.Response(status=error.status, body=body, content_type="application/json", headers=headers)


# Router misses under /v2/ are still registry answers: a client should see a parseable error.
_ROUTER_ERRORS = {404: ("UNSUPPORTED", "unknown API path"), 405: ("UNSUPPORTED", "method not allowed here")}


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RegistryError as error:
        return error_response(error)
    except web.HTTPException as exc:
        if exc.status in _ROUTER_ERRORS and request.path.startswith("/v2"):
            code, message = _ROUTER_ERRORS[exc.status]
            status = 404 if exc.status == 404 else 405
            return error_response(RegistryError(code, message, {"path": request.path}, status=status))
        raise
    except sa.exc.DataError as exc:
        # The database refused a value from the request as data (SQLSTATE class 22): PostgreSQL
        # text cannot hold NUL, and it enforces column widths and number ranges that SQLite does
        # not. Input checks catch these where they are known; this keeps any other one a 400.
        log.warning("refused input on %s %s: %s", request.method, request.path, exc.orig)
        detail = {"reason": str(getattr(exc.orig, "sqlstate", "") or "invalid value")}
        return error_response(RegistryError("UNSUPPORTED", "a value in the request is not valid", detail, status=400))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(RegistryError("UNKNOWN", "internal server error"))
