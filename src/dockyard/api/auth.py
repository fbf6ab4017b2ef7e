"""Docker token authentication: the ``/token`` endpoint and the check on every ``/v2`` call.

Flow (distribution's token-auth spec): a call without a valid token gets 401 with
``WWW-Authenticate: Bearer realm=".../token",service=...,scope=...``; the client asks ``/token``
for that scope (with basic credentials, a refresh token, or as nobody) and retries with the
JWT. The token carries the subset of the scope the caller holds, so a caller who lacks access
gets the same 401 whether or not the repository exists.

A token issued from a personal access token or a robot secret names that credential
(``Claims.token_id``), and each request checks it is still active (cached for a couple of
seconds by ``AuthService.credential_active``): revoking the credential stops its tokens at their
next use instead of at expiry.
"""

from __future__ import annotations

import base64
import binascii
import time
from datetime import UTC, datetime

from aiohttp import web

from dockyard.api.auditing import audit
from dockyard.api.errors import Handler
from dockyard.api.state import AUTH
from dockyard.auth.permissions import ANONYMOUS, Principal
from dockyard.auth.tokens import Access, Claims, TokenError, parse_scope
from dockyard.registry.errors import RegistryError

# What each route needs: (resource pattern, method) -> repository action; None: any valid token.
_PULL, _PUSH, _DELETE = "pull", "push", "delete"
_ROUTE_ACTIONS: dict[str, dict[str, str | None]] = {
    "/v2/": {"GET": None, "HEAD": None},
    "/v2": {"GET": None, "HEAD": None},
    "/v2/_catalog": {"GET": None, "HEAD": None},
    "/v2/{name}/manifests/{reference}": {"GET": _PULL, "HEAD": _PULL, "PUT": _PUSH, "DELETE": _DELETE},
    "/v2/{name}/blobs/{digest}": {"GET": _PULL, "HEAD": _PULL, "DELETE": _DELETE},
    "/v2/{name}/blobs/uploads/": {"POST": _PUSH},
    "/v2/{name}/blobs/uploads": {"POST": _PUSH},
    "/v2/{name}/blobs/uploads/{uuid}": {"GET": _PUSH, "PATCH": _PUSH, "PUT": _PUSH, "DELETE": _PUSH},
    "/v2/{name}/tags/list": {"GET": _PULL, "HEAD": _PULL},
    "/v2/{name}/referrers/{digest}": {"GET": _PULL, "HEAD": _PULL},
}
# The scope a client is told to ask for: pushes need pull too (clients check before uploading).
_CHALLENGE_ACTIONS = {_PULL: "pull", _PUSH: "pull,push", _DELETE: "delete"}
MAX_TOKEN_REQUEST = 64 * 1024


def claims_of(request: web.Request) -> Claims | None:
    """The verified token of this request; None when authentication is off."""
    return request.get("claims")


def principal_of(request: web.Request) -> Principal | None:
    claims = claims_of(request)
    return claims.principal if claims else None


def _realm(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}/token"


def _challenge(request: web.Request, scope: str | None, error: str | None = None) -> RegistryError:
    auth = request.app[AUTH]
    parts = [f'realm="{_realm(request)}"', f'service="{auth.tokens.service}"']
    if scope:
        parts.append(f'scope="{scope}"')
    if error:
        parts.append(f'error="{error}"')
    return RegistryError(
        "UNAUTHORIZED",
        "authentication required" if error is None else "access to the resource is denied",
        detail=[{"Type": "repository", "Name": scope.split(":")[1], "Action": scope.rsplit(":", 1)[1]}]
        if scope and scope.startswith("repository:")
        else None,
        headers={"WWW-Authenticate": "Bearer " + ",".join(parts)},
    )


@web.middleware
async def authorization_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route.resource
    if route is None or not request.path.startswith("/v2"):
        return await handler(request)
    actions = _ROUTE_ACTIONS.get(route.canonical)
    if actions is None or request.method not in actions:
        return await handler(request)
    action = actions[request.method]
    name = request.match_info.get("name")
    scope = f"repository:{name}:{_CHALLENGE_ACTIONS[action]}" if action and name else None
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise _challenge(request, scope)
    auth = request.app[AUTH]
    try:
        claims = auth.tokens.verify_access(header[7:].strip())
    except TokenError:
        raise _challenge(request, scope, "invalid_token") from None
    if claims.token_id is not None and not await auth.credential_active(claims.token_id):
        raise _challenge(request, scope, "invalid_token")
    if action and name and not claims.allows("repository", name, action):
        audit(
            request,
            "denied",
            name,
            detail=f"{request.method} {request.path}",
            actor=claims.principal.name,
            outcome="denied",
        )
        raise _challenge(request, scope, "insufficient_scope")
    request["claims"] = claims
    return await handler(request)


# -- the token endpoint -----------------------------------------------------------------------


_TOKEN_ERROR_CODES = {401: "UNAUTHORIZED", 429: "TOOMANYREQUESTS"}


def _token_error(status: int, message: str, basic: bool = False) -> web.Response:
    headers = {"WWW-Authenticate": 'Basic realm="dockyard"'} if basic else {}
    code = _TOKEN_ERROR_CODES.get(status, "DENIED")
    return web.json_response(
        {"errors": [{"code": code, "message": message, "detail": None}]},
        status=status,
        headers=headers,
    )


def _basic_credentials(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("malformed basic credentials") from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise ValueError("malformed basic credentials")
    return user, password


def _scopes(values: list[str]) -> list[Access]:
    scopes = []
    for value in values:
        for part in value.split(" "):
            if part and (scope := parse_scope(part)) is not None:
                scopes.append(scope)
    return scopes


async def _respond(
    request: web.Request, principal: Principal, scopes: list[Access], offline: bool, token_id: str | None = None
) -> web.Response:
    auth = request.app[AUTH]
    granted = await auth.grant(principal, scopes, token_id)
    token, ttl = auth.tokens.issue_access(principal, granted, token_id)
    body = {
        "token": token,
        "access_token": token,
        "expires_in": ttl,
        "issued_at": datetime.fromtimestamp(time.time(), UTC).isoformat().replace("+00:00", "Z"),
        "scope": " ".join(f"{a.type}:{a.name}:{','.join(sorted(a.actions))}" for a in granted),
    }
    if offline and not principal.anonymous:
        body["refresh_token"] = auth.tokens.issue_refresh(principal, token_id)
    requested = " ".join(f"{a.type}:{a.name}:{','.join(sorted(a.actions))}" for a in scopes)
    held = {(g.type, g.name): g.actions for g in granted}
    full = all(s.actions <= held.get((s.type, s.name), frozenset()) for s in scopes)
    if scopes or not principal.anonymous:
        audit(
            request,
            "token",
            outcome="ok" if full else "denied",
            detail=f"requested {requested or '-'}; granted {body['scope'] or '-'}",
            actor=principal.name,
        )
    return web.json_response(body)


async def _login(request: web.Request, name: str, password: str) -> tuple[Principal, str | None] | web.Response:
    """Check credentials, with brute-force protection: a client with too many recent failures
    gets 429 and Retry-After before its password is even looked at."""
    auth = request.app[AUTH]
    client = request.remote or ""
    wait = await auth.throttle.retry_after(client)
    if wait is not None:
        audit(request, "login", outcome="denied", detail="too many failed logins", actor=name)
        response = _token_error(429, "too many failed logins; try again later")
        response.headers["Retry-After"] = str(wait)
        return response
    found = await auth.login(name, password)
    if found is None:
        await auth.throttle.failed(client)
        audit(request, "login", outcome="failed", actor=name)
        return _token_error(401, "incorrect username or password", basic=True)
    return found


async def get_token(request: web.Request) -> web.Response:
    """``GET /token``: basic credentials (or none, for anonymous pulls of public repositories)."""
    auth = request.app[AUTH]
    if request.query.get("service", auth.tokens.service) != auth.tokens.service:
        return _token_error(400, "unknown service")
    try:
        credentials = _basic_credentials(request)
    except ValueError as exc:
        return _token_error(400, str(exc))
    principal, token_id = ANONYMOUS, None
    if credentials is not None:
        found = await _login(request, *credentials)
        if isinstance(found, web.Response):
            return found
        principal, token_id = found
    offline = request.query.get("offline_token", "").lower() == "true"
    return await _respond(request, principal, _scopes(request.query.getall("scope", [])), offline, token_id)


async def post_token(request: web.Request) -> web.Response:
    """``POST /token``: the OAuth2 password and refresh-token grants."""
    auth = request.app[AUTH]
    if request.content_length is not None and request.content_length > MAX_TOKEN_REQUEST:
        return _token_error(400, "token request too large")
    try:
        form = await request.post()
    except (ValueError, web.HTTPException):
        return _token_error(400, "malformed token request")
    if form.get("service", auth.tokens.service) != auth.tokens.service:
        return _token_error(400, "unknown service")
    grant_type = form.get("grant_type")
    scopes = _scopes([str(v) for v in form.getall("scope", [])])
    if grant_type == "password":
        found = await _login(request, str(form.get("username", "")), str(form.get("password", "")))
        if isinstance(found, web.Response):
            return found
        principal, token_id = found
        return await _respond(request, principal, scopes, offline=True, token_id=token_id)
    if grant_type == "refresh_token":
        try:
            claims = auth.tokens.verify_refresh(str(form.get("refresh_token", "")))
        except TokenError:
            return _token_error(401, "invalid refresh token")
        principal = await auth.current(claims.principal, claims.token_id)
        if principal is None:
            return _token_error(401, "the account or credential of this refresh token is no longer valid")
        return await _respond(request, principal, scopes, offline=True, token_id=claims.token_id)
    return _token_error(400, "unsupported grant_type")


def setup(app: web.Application) -> None:
    app.router.add_get("/token", get_token)
    app.router.add_post("/token", post_token)
