"""What every admin handler shares: who is calling, what they may do, and the JSON errors.

The registry's authorization middleware only covers ``/v2``: its rules are repository scopes
carried in a token. The admin API needs the caller's identity and then a rule per operation
(site admin, organization admin, repository admin, oneself), so each handler calls ``caller``
and one of the ``require_*`` checks itself.

A caller proves who they are with a JWT from ``/token`` (what the web UI holds) or with basic
credentials (what a script has). Either way the account is read again from the database, so a
disabled user or a revoked personal access token is refused at once, and losing site admin counts
at the next request. A personal access token's scope caps the admin API as it caps the registry:
only an 'admin' token may change anything, so that a leaked read-only CI token cannot mint itself
a stronger one. Robots are an organization's credential for pushing and pulling: they may ask who
they are, nothing more.

Every change made here is an "admin" event in the audit log (``record``), and so is every refusal
(403, recorded by ``json_errors``): who tried to manage what they may not is what an administrator
reviewing the log wants to see first.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dockyard.api.auditing import audit
from dockyard.api.errors import Handler
from dockyard.api.state import AUTH
from dockyard.auth import administration, credentials
from dockyard.auth import audit as audit_log
from dockyard.auth.accounts import AccountError
from dockyard.auth.administration import Administered
from dockyard.auth.permissions import ADMIN, Principal
from dockyard.auth.service import AuthService
from dockyard.auth.tokens import TokenError
from dockyard.meta.db import Database

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Router and body-size failures under the prefix, rendered as API errors rather than HTML.
_HTTP_ERRORS = {
    404: ("NOT_FOUND", "unknown API path"),
    405: ("METHOD_NOT_ALLOWED", "method not allowed here"),
    413: ("TOO_LARGE", "the request body is too large"),
}
# The caller's name once known, so that a refusal after authentication is audited under it.
_ACTOR = web.RequestKey("admin_actor", str)
_MAX_AUDITED_PATH = 200


class ApiError(Exception):
    """A failure to answer as ``{"errors": [{"code", "message", "detail"}]}``: the registry's
    error shape, so one parser serves the web UI for both APIs. ``repository`` is not sent: it is
    the repository or namespace a refusal concerns, for the audit log."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        detail: Any = None,
        headers: dict[str, str] | None = None,
        *,
        repository: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail
        self.headers = headers or {}
        self.repository = repository

    def response(self) -> web.Response:
        body = {"errors": [{"code": self.code, "message": self.message, "detail": self.detail}]}
        return web.json_response(body, status=self.status, headers=self.headers)


def bad_request(message: str, detail: Any = None) -> ApiError:
    return ApiError(400, "BAD_REQUEST", message, detail)


def not_found(message: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", message)


def denied(message: str, repository: str | None = None) -> ApiError:
    """403; ``repository`` names the repository or namespace refused, for the audit log."""
    return ApiError(403, "DENIED", message, repository=repository)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Everything under the prefix answers in JSON: our errors, the account model's refusals
    (bad input, so 400), and aiohttp's own (unknown path, wrong method, body too large)."""
    try:
        return await handler(request)
    except ApiError as error:
        if error.status == 403:
            audit_refusal(request, error)
        return error.response()
    except AccountError as error:
        return bad_request(str(error)).response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code, message = _HTTP_ERRORS.get(exc.status, ("BAD_REQUEST" if exc.status < 500 else "UNKNOWN", exc.reason))
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")}
        return ApiError(exc.status, code, message, headers=headers).response()


def audit_refusal(request: web.Request, error: ApiError) -> None:
    """Reads are audited too: probing for what one may not see is worth knowing about. A 401 is
    not: it names nobody, and failed logins are already audited by ``/token``. The web UI's pages
    call this too, so that a refusal reads the same in the log wherever it was made."""
    path = request.path if len(request.path) <= _MAX_AUDITED_PATH else request.path[:_MAX_AUDITED_PATH] + "..."
    detail = f"{request.method} {path}: {error.message}".encode(errors="backslashreplace").decode()
    audit(request, audit_log.ADMIN, error.repository, outcome="denied", detail=detail, actor=request.get(_ACTOR, ""))


# -- who is calling ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    credential: str | None  # "pat:12" or "robot:3"; None for a password login
    cap: int  # the highest level the credential allows; ADMIN for a password

    @property
    def name(self) -> str:
        return self.principal.name

    @property
    def is_admin(self) -> bool:
        return self.principal.kind == "user" and self.principal.is_admin


def auth_of(request: web.Request) -> AuthService:
    return request.config_dict[AUTH]


def db_of(request: web.Request) -> Database:
    return auth_of(request).db


def _unauthorized(request: web.Request, message: str, error: str | None = None) -> ApiError:
    """401 with the Bearer challenge a registry client knows: it says where to get a token."""
    challenge = f'Bearer realm="{request.scheme}://{request.host}/token",service="{auth_of(request).tokens.service}"'
    if error:
        challenge += f',error="{error}"'
    return ApiError(401, "UNAUTHORIZED", message, headers={"WWW-Authenticate": challenge})


def _basic(value: str) -> tuple[str, str] | None:
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


async def caller(request: web.Request, *, robots: bool = False) -> Caller:
    """The authenticated caller, or 401; 403 for a robot (unless ``robots``) and for a write
    through a personal access token whose scope is below 'admin'."""
    auth = auth_of(request)
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        try:
            claims = auth.tokens.verify_access(value.strip())
        except TokenError:
            raise _unauthorized(request, "invalid or expired token", "invalid_token") from None
        principal = await auth.current(claims.principal, claims.token_id)
        credential = claims.token_id
        if principal is None:
            raise _unauthorized(request, "the account or credential of this token is no longer valid", "invalid_token")
    elif scheme == "basic":
        login = _basic(value)
        found = await auth.login(*login) if login is not None else None
        if found is None:
            raise _unauthorized(request, "incorrect username or password")
        principal, credential = found
    else:
        raise _unauthorized(request, "authentication required")
    cap = ADMIN if credential is None else await auth.db.read(credentials.credential_cap, credential)
    if cap is None:
        raise _unauthorized(request, "the credential of this token is no longer valid", "invalid_token")
    request[_ACTOR] = principal.name
    if principal.kind != "user" and not robots:
        raise denied("robot accounts cannot use the admin API")
    if request.method not in SAFE_METHODS and cap < ADMIN:
        raise denied("this personal access token may only read here: changes need a token with scope 'admin'")
    return Caller(principal, credential, cap)


def password_caller(request: web.Request, principal: Principal) -> Caller:
    """The caller behind a web session: a person signed in with their password, so the same
    caller as a password login here (the session already refuses disabled users and robots)."""
    request[_ACTOR] = principal.name
    return Caller(principal, None, ADMIN)


# -- what they may do --------------------------------------------------------------------------


def require_site_admin(who: Caller) -> None:
    if not who.is_admin:
        raise denied("only a site administrator may do this")


async def administered(request: web.Request, who: Caller) -> Administered:
    return await db_of(request).read(administration.administered, who.principal)


async def require_org_admin(request: web.Request, who: Caller, org: str) -> None:
    """Checked before the organization's existence, so that a stranger cannot tell a missing
    organization from one they may not manage: both are 403."""
    if not (await administered(request, who)).namespace(org):
        raise denied(f"only an administrator of organization {org!r} may do this", org)


# -- answers -----------------------------------------------------------------------------------


def timestamp(value: float | None) -> str | None:
    """RFC 3339 in UTC, to the second: what JSON Schema's ``date-time`` and browsers parse."""
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def no_content() -> web.Response:
    return web.Response(status=204)


def record(request: web.Request, who: Caller, detail: str, repository: str | None = None) -> None:
    """Audit a change that succeeded. ``detail`` says what changed in a few words, never a secret;
    ``repository`` is the repository or namespace (an organization is one) it concerns, so that
    the log of one organization can be read with ``?repository=``."""
    audit(request, audit_log.ADMIN, repository, detail=detail, actor=who.name)
