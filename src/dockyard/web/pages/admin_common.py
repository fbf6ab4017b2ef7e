"""What the administration pages share: who is asking, and how refusals and errors are shown.

The pages apply no permission rule of their own. Each change or listing calls the operation the
JSON admin API calls (``api.admin.users.add_user``, ``orgs.add_team``, ``grants.give``...), with
the caller a web session stands for: a person signed in with their password, exactly the caller
of a password login on the API (``common.password_caller``). So the rule, the change and its
"admin" audit event are one piece of code for both, and a refusal (403) is audited the same way
(``common.audit_refusal``) before the visitor sees the "Not allowed" page.

Changes answer with a redirect to the page they were made from (post/redirect/get, so that a
reload does not repeat them) and a fixed confirmation chosen by ``?done=``: a key, never text
taken from the URL, so that a link cannot make the site say something it did not. The exception
is a change whose answer holds a secret shown once (a token, a robot, a webhook): that page is
rendered directly, and ``no-store`` keeps it out of the browser's cache.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, NoReturn
from urllib.parse import quote, urlencode

from aiohttp import web
from multidict import MultiDictProxy

from dockyard.api.admin.common import ApiError, Caller, audit_refusal, password_caller
from dockyard.api.admin.users import MAX_PASSWORD
from dockyard.auth.accounts import AccountError
from dockyard.web import sessions
from dockyard.web.context import accounts_enabled
from dockyard.web.render import page

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FORM_ERRORS = (ApiError, AccountError)

DONE = {
    "token-revoked": "The token was revoked: logins with it fail from now on.",
    "password-changed": "Your password was changed.",
    "password-reset": "The password was reset.",
    "user-created": "The user was created.",
    "user-removed": "The user was removed.",
    "user-disabled": "The user was disabled: their logins, tokens and sessions no longer work.",
    "user-enabled": "The user was enabled again.",
    "org-created": "The organization was created.",
    "team-created": "The team was created.",
    "member-added": "The member was added to the team.",
    "member-removed": "The member was removed from the team.",
    "grant-given": "The grant was given.",
    "grant-taken": "The grant was taken back.",
    "robot-removed": "The robot account was removed: its secret no longer works.",
    "policy-set": "The policy was saved.",
    "policy-removed": "The policy was removed.",
    "quota-set": "The quota was set.",
    "quota-removed": "The quota was removed.",
    "webhook-removed": "The webhook was removed.",
    "pinged": "A ping was queued: it appears below, and is sent within seconds.",
    "redelivered": "The delivery was queued to be sent again.",
}


async def admin_view(request: web.Request, template: str, **context: Any) -> web.Response:
    """An administration page: the admin navigation, and the confirmation of the change that
    redirected here (``?done=``)."""
    return await page(request, template, nav="admin", flash=done_message(request), **context)


def done_message(request: web.Request) -> str | None:
    return DONE.get(request.query.get("done", ""))


def done(location: str, key: str) -> web.HTTPSeeOther:
    """The redirect after a change: ``location`` with the confirmation ``key``."""
    assert key in DONE
    separator = "&" if "?" in location else "?"
    return web.HTTPSeeOther(f"{location}{separator}{urlencode({'done': key})}")


def path_part(value: str) -> str:
    """A name as one segment of a URL of these pages."""
    return quote(value, safe="")


async def visitor(request: web.Request) -> Caller:
    """The signed-in person as an admin API caller. Signed-out visitors are sent to sign in (and
    back here afterwards); on an open registry there are no accounts to administer."""
    if not accounts_enabled(request):
        raise web.HTTPFound("/admin")
    session = await sessions.current(request)
    if session is None:
        back = request.path_qs if request.method == "GET" else "/admin"
        raise web.HTTPFound(f"/login?{urlencode({'next': back})}")
    return password_caller(request, session.principal)


async def submitted(request: web.Request) -> tuple[Caller, MultiDictProxy[str]]:
    """The visitor and their form, after the CSRF checks (403 without them)."""
    who = await visitor(request)
    form = await sessions.checked_form(request, await sessions.current(request))
    return who, form


def field(form: MultiDictProxy[str], name: str) -> str:
    """A text field, trimmed; absent (or a file) is empty. Lengths are for the operation to check,
    as it does for the API: never cut here, which could turn refused input into accepted input."""
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def password(form: MultiDictProxy[str], name: str) -> str:
    """A password field, as typed (spaces count); as long as the API accepts, no longer."""
    value = form.get(name, "")
    value = value if isinstance(value, str) else ""
    if len(value) > MAX_PASSWORD:
        raise AccountError(f"a password is at most {MAX_PASSWORD} characters long")
    return value


def refuse(request: web.Request, error: ApiError) -> NoReturn:
    audit_refusal(request, error)
    raise web.HTTPForbidden(text=error.message)


def inline(request: web.Request, error: Exception, *, show_refusal: bool = False) -> tuple[int, str]:
    """The status and message with which a form shows why a change failed. A refusal (403) is
    audited and, unless ``show_refusal``, answered with the "Not allowed" page instead: someone
    who may not make a change usually may not see the page of its form either."""
    if isinstance(error, ApiError):
        if error.status == 403:
            if not show_refusal:
                refuse(request, error)
            audit_refusal(request, error)
        return error.status, error.message
    return 400, str(error)


def admin_page(handler: Handler) -> Handler:
    """Turn what an operation raises while a page loads into that page's error: 403 (audited),
    404, or 400 with the operation's message."""

    @wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as error:
            if error.status == 403:
                refuse(request, error)
            title = "Not found" if error.status == 404 else "Cannot show this page"
            return await page(request, "error.html", status=error.status, title=title, message=error.message)
        except AccountError as error:
            return await page(request, "error.html", status=400, title="Cannot show this page", message=str(error))

    return wrapped
