"""Administration, part one: the overview at ``/admin``, one's own personal access tokens and
password. (People and organizations: ``admin_people``; policies, quotas and webhooks:
``admin_lifecycle``; the audit log: ``admin_audit``; what they share: ``admin_common``.)

A token's secret appears once, on the page that answers its creation, exactly as the API shows it
once in the answer to ``POST /api/v1/me/tokens``: the database keeps only its hash.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dockyard.api.admin import me, orgs, users
from dockyard.api.admin.common import Caller, administered
from dockyard.auth import credentials
from dockyard.auth.accounts import AccountError
from dockyard.web.context import accounts_enabled
from dockyard.web.pages.admin_common import (
    FORM_ERRORS,
    admin_page,
    admin_view,
    done,
    field,
    inline,
    password,
    submitted,
    visitor,
)
from dockyard.web.render import page

SCOPES = tuple(credentials.SCOPES)


@admin_page
async def overview(request: web.Request) -> web.Response:
    if not accounts_enabled(request):
        return await page(request, "admin/no_accounts.html", title="Administration", nav="admin")
    who = await visitor(request)
    organizations = await orgs.visible_orgs(request, who)
    scope = await administered(request, who)
    return await page(
        request,
        "admin/overview.html",
        title="Administration",
        nav="admin",
        section="overview",
        organizations=organizations,
        namespaces=sorted(scope.namespaces),
        repositories=sorted(scope.repositories),
    )


# -- personal access tokens ------------------------------------------------------------------


async def _tokens_page(request: web.Request, who: Caller, status: int = 200, **context: Any) -> web.Response:
    context = {"created": None, "form": {"name": "", "scope": "read", "days": ""}, **context}
    found = await me.own_tokens(request, who)
    return await admin_view(
        request,
        "admin/tokens.html",
        status=status,
        title="Your access tokens",
        section="tokens",
        tokens=found,
        scopes=SCOPES,
        max_days=me.MAX_TOKEN_DAYS,
        **context,
    )


@admin_page
async def tokens(request: web.Request) -> web.Response:
    return await _tokens_page(request, await visitor(request))


def _days(text: str) -> int:
    """The optional lifetime field: blank is "never expires"."""
    if not text:
        return 0
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= me.MAX_TOKEN_DAYS:
        raise ValueError(f"the lifetime must be a whole number of days from 1 to {me.MAX_TOKEN_DAYS}, or blank")
    return int(text)


@admin_page
async def create_token(request: web.Request) -> web.Response:
    who, form = await submitted(request)
    values = {"name": field(form, "name"), "scope": field(form, "scope"), "days": field(form, "days")}
    try:
        if values["scope"] not in SCOPES:
            raise ValueError(f"the scope must be one of {', '.join(SCOPES)}")
        days = _days(values["days"])
        token, secret = await me.add_own_token(request, who, values["name"], values["scope"], days or None)
    except (*FORM_ERRORS, ValueError) as error:
        status, message = inline(request, error)
        return await _tokens_page(request, who, status=status, error=message, form=values)
    return await _tokens_page(request, who, created={"token": token, "secret": secret})


@admin_page
async def revoke_token(request: web.Request) -> web.Response:
    who, _ = await submitted(request)
    try:
        await me.revoke_own_token(request, who, request.match_info["name"])
    except FORM_ERRORS as error:
        status, message = inline(request, error)
        return await _tokens_page(request, who, status=status, error=message)
    raise done("/admin/tokens", "token-revoked")


# -- one's own password ----------------------------------------------------------------------


async def _password_page(request: web.Request, status: int = 200, error: str | None = None) -> web.Response:
    return await admin_view(
        request,
        "admin/password.html",
        status=status,
        title="Change your password",
        section="password",
        error=error,
    )


@admin_page
async def password_form(request: web.Request) -> web.Response:
    await visitor(request)
    return await _password_page(request)


@admin_page
async def change_password(request: web.Request) -> web.Response:
    """As ``PUT /api/v1/users/{me}/password``: one's own password needs the current one. A wrong
    current password is a refusal (403, audited) shown in the form."""
    who, form = await submitted(request)
    try:
        current, new, again = (password(form, key) for key in ("current", "password", "again"))
        if new != again:
            raise AccountError("the new password and its repetition differ")
        await users.change_password(request, who, who.name, new, current)
    except FORM_ERRORS as error:
        status, message = inline(request, error, show_refusal=True)
        return await _password_page(request, status, message)
    raise done("/admin/password", "password-changed")


ROUTES = [
    ("GET", "/admin", overview),
    ("GET", "/admin/tokens", tokens),
    ("POST", "/admin/tokens", create_token),
    ("POST", "/admin/tokens/{name}/revoke", revoke_token),
    ("GET", "/admin/password", password_form),
    ("POST", "/admin/password", change_password),
]
