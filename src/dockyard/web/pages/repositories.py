"""Browsing: the repository list, a repository with its tags, and a manifest with its layers.

URLs: ``/`` lists repositories; ``/r/<name>`` is a repository (names contain slashes); everything
below a repository follows ``/-/``, which no repository name can contain (a name component starts
and ends with a letter or digit), so ``/r/<name>/-/manifests/<digest>`` never clashes with a name.

Permissions are the registry's own: a repository is shown to those ``repository_level`` gives READ
(anything else is "not found", exactly like a missing one), a tag can be deleted with DELETE, and
the description and visibility are changed by its administrators (``repository_settings``, the
admin API's rule). On an open registry (no accounts) the pages are read-only: without sessions
there is no CSRF token to protect a change with.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from multidict import MultiDictProxy

from dockyard.api.admin.common import Caller, audit_refusal, denied, password_caller, record
from dockyard.api.auditing import audit
from dockyard.auth import repository_settings
from dockyard.auth.access import repository_level
from dockyard.auth.permissions import ADMIN, DELETE, READ
from dockyard.registry import browse
from dockyard.registry.errors import RegistryError
from dockyard.registry.names import MAX_NAME_LENGTH, is_valid_tag, validate_name
from dockyard.web import sessions
from dockyard.web.context import accounts_enabled, db_of, principal, registry_of
from dockyard.web.render import not_found, page, short_digest

_SORT_LABELS = {"name": "Name", "push": "Last push", "size": "Size"}
_SAVED = {
    "description": "The description was saved.",
    "public": "The repository is now public: anyone may pull it.",
    "private": "The repository is now private: only those granted access may pull it.",
}
_NOT_FOUND = "This repository"


def _number(value: str | None) -> int:
    try:
        return max(1, min(int(value or 1), 1_000_000))
    except ValueError:
        return 1


def _valid_name(name: str) -> bool:
    try:
        validate_name(name)
    except RegistryError:
        return False
    return len(name) <= MAX_NAME_LENGTH


async def _level(request: web.Request, name: str) -> int:
    """The visitor's level on ``name``; READ for everyone on an open registry (read-only pages)."""
    if not accounts_enabled(request):
        return READ
    return await db_of(request).read(repository_level, await principal(request), name)


def _pull_commands(request: web.Request, name: str, reference: str) -> dict[str, str]:
    """``docker pull`` and ``podman pull`` for this host. Over plain HTTP, podman needs to be told
    (docker reads its insecure registries from the daemon's configuration instead)."""
    separator = "@" if ":" in reference else ":"
    target = f"{request.host}/{name}{separator}{reference}"
    podman = "podman pull --tls-verify=false" if request.scheme == "http" else "podman pull"
    return {"docker": f"docker pull {target}", "podman": f"{podman} {target}"}


# -- the list -----------------------------------------------------------------------------------


async def repository_list(request: web.Request) -> web.Response:
    query = request.query
    search = query.get("q", "")[:MAX_NAME_LENGTH]
    namespace = query.get("namespace", "")[:MAX_NAME_LENGTH]
    sort = query.get("sort", "name")
    sort = sort if sort in browse.SORTS else "name"
    who = await principal(request) if accounts_enabled(request) else None
    listing = await db_of(request).read(
        browse.repository_list, who, namespace, search, sort, _number(query.get("page"))
    )

    def page_url(number: int) -> str:
        params = {k: v for k, v in (("q", search), ("namespace", namespace), ("sort", sort)) if v}
        if sort == "name":
            params.pop("sort", None)
        return "/?" + urlencode({**params, "page": number})

    return await page(
        request, "repositories.html", title="Repositories", nav="repositories", listing=listing, q=search,
        namespace=namespace, sort=sort, sorts=_SORT_LABELS, page_url=page_url, host=request.host,
        filtered=bool(search or namespace),
    )  # fmt: skip


# -- a repository -------------------------------------------------------------------------------


async def _repository(
    request: web.Request, name: str, level: int, status: int = 200, error: str | None = None, flash: str | None = None
) -> web.Response:
    view = await db_of(request).read(browse.repository_view, name)
    if view is None:
        return await not_found(request, _NOT_FOUND)
    search = request.query.get("tag", "")[:128]
    tag_list = await browse.tag_list(registry_of(request), view.id, search, _number(request.query.get("page")))
    signed_in = await sessions.current(request) is not None
    default = view.default_tag or "latest"
    pull = _pull_commands(request, name, default)

    def page_url(number: int) -> str:
        return f"/r/{name}?" + urlencode({**({"tag": search} if search else {}), "page": number})

    return await page(
        request, "repository.html", status=status, title=f"{name} · Repositories", nav="repositories",
        repo=view, tag_list=tag_list, search=search, pull=pull, default_tag=default, host=request.host,
        can_admin=signed_in and level >= ADMIN, can_delete=signed_in and level >= DELETE,
        pull_command=lambda tag: _pull_commands(request, name, tag)["docker"], page_url=page_url,
        error=error, flash=flash,
    )  # fmt: skip


async def repository_page(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if not _valid_name(name):
        return await not_found(request, _NOT_FOUND)
    level = await _level(request, name)
    if level < READ:
        return await not_found(request, _NOT_FOUND)
    flash = _SAVED.get(request.query.get("saved", ""))
    deleted = request.query.get("deleted", "")
    if is_valid_tag(deleted):
        flash = f"Tag {deleted} was deleted."
    return await _repository(request, name, level, flash=flash)


async def tag_page(request: web.Request) -> web.Response:
    """``/r/<name>/-/tags/<tag>``: a bookmarkable address for a tag, leading to its manifest."""
    name, tag = request.match_info["name"], request.match_info["tag"]
    if not _valid_name(name) or not is_valid_tag(tag) or await _level(request, name) < READ:
        return await not_found(request, _NOT_FOUND)
    try:
        manifest = await registry_of(request).get_manifest(name, tag)
    except RegistryError:
        return await not_found(request, f"Tag {tag} of {name}")
    raise web.HTTPFound(f"/r/{name}/-/manifests/{manifest.digest}")


# -- changes ------------------------------------------------------------------------------------


async def _change(request: web.Request, needed: int) -> tuple[str, MultiDictProxy[str], int, Caller]:
    """The checks every change goes through, in this order: the form's CSRF token and origin,
    a valid name, the visitor's right to see the repository (else "not found", as for a missing
    one), then the level the change needs (else 403, audited like the admin API's refusals).
    Returns the name, the form, the visitor's level and the caller a browser session stands for
    (a password login, as on the admin API)."""
    session = await sessions.current(request)
    form = await sessions.checked_form(request, session)
    name = request.match_info["name"]
    if not _valid_name(name):
        raise web.HTTPNotFound()
    level = await _level(request, name)
    if level < READ:
        raise web.HTTPNotFound()
    if session is None:
        if not accounts_enabled(request):
            raise web.HTTPForbidden(text="This registry has no accounts: its web pages only show it.")
        raise web.HTTPForbidden(text="Sign in to change repositories.")
    who = password_caller(request, session.principal)
    if level < needed:
        if needed == DELETE:
            tag = request.match_info.get("tag")
            audit(request, "delete", name, tag, outcome="denied", detail="web: no delete permission", actor=who.name)
            raise web.HTTPForbidden(text=f"You may not delete tags in the repository {name}.")
        refusal = denied(f"only an administrator of {name!r} may change it", name)
        audit_refusal(request, refusal)
        raise web.HTTPForbidden(text=refusal.message)
    return name, form, level, who


async def _settle(request: web.Request, who: Caller, name: str, change: Any, *args: Any) -> None:
    """Run a ``repository_settings`` change; its own check (same rule, same transaction) may
    still refuse when the visitor lost the right since the page was checked."""
    try:
        await db_of(request).run(change, who.principal, name, *args)
    except repository_settings.NotAdministrator as exc:
        audit_refusal(request, denied(str(exc), name))
        raise web.HTTPForbidden(text=str(exc)) from None
    except repository_settings.NoSuchRepository:
        raise web.HTTPNotFound() from None


async def edit_description(request: web.Request) -> web.Response:
    name, form, level, who = await _change(request, ADMIN)
    text = str(form.get("description", ""))
    if len(text) > repository_settings.MAX_DESCRIPTION:
        error = f"A description is at most {repository_settings.MAX_DESCRIPTION} characters."
        return await _repository(request, name, level, status=400, error=error)
    await _settle(request, who, name, repository_settings.set_description, text)
    record(request, who, f"set the description of repository {name}", name)
    raise web.HTTPSeeOther(f"/r/{name}?saved=description")


async def edit_visibility(request: web.Request) -> web.Response:
    name, form, _level_, who = await _change(request, ADMIN)
    visibility = form.get("visibility")
    if visibility not in ("public", "private"):
        raise web.HTTPBadRequest(text="visibility must be public or private")
    await _settle(request, who, name, repository_settings.set_visibility, visibility == "public")
    record(request, who, f"make repository {name} {visibility}", name)  # worded as the admin API's
    raise web.HTTPSeeOther(f"/r/{name}?saved={visibility}")


async def delete_tag(request: web.Request) -> web.Response:
    """Through ``Registry.delete_manifest``, like ``DELETE /v2/<name>/manifests/<tag>``: tag
    immutability applies and webhooks hear of it."""
    name, _form, level, who = await _change(request, DELETE)
    tag = request.match_info["tag"]
    try:
        await registry_of(request).delete_manifest(name, tag, who.name)
    except RegistryError as error:
        if error.code == "DENIED":
            audit(request, "delete", name, tag, outcome="denied", detail=error.message, actor=who.name)
            message = f"Tag {tag} was not deleted: {error.message}"
            return await _repository(request, name, level, status=403, error=message)
        return await _repository(request, name, level, status=404, error=f"There is no tag {tag} to delete.")
    audit(request, "delete", name, tag, actor=who.name)
    raise web.HTTPSeeOther(f"/r/{name}?{urlencode({'deleted': tag})}")


# -- a manifest ---------------------------------------------------------------------------------


async def manifest_page(request: web.Request) -> web.Response:
    name, digest = request.match_info["name"], request.match_info["digest"]
    if not _valid_name(name) or await _level(request, name) < READ:
        return await not_found(request, _NOT_FOUND)
    view = await browse.manifest_view(registry_of(request), name, digest)
    if view is None:
        return await not_found(request, f"Manifest {digest[:80]} in {name}")
    return await page(
        request, "manifest.html", title=f"{name}@{short_digest(view.digest)} · Repositories", nav="repositories",
        name=name, m=view, pull=_pull_commands(request, name, view.digest),
    )  # fmt: skip


# Specific routes first: ``{name:.+}`` would otherwise swallow ``/-/...``.
ROUTES = [
    ("GET", "/", repository_list),
    ("GET", "/r/{name:.+?}/-/manifests/{digest}", manifest_page),
    ("GET", "/r/{name:.+?}/-/tags/{tag}", tag_page),
    ("POST", "/r/{name:.+?}/-/tags/{tag}/delete", delete_tag),
    ("POST", "/r/{name:.+?}/-/description", edit_description),
    ("POST", "/r/{name:.+?}/-/visibility", edit_visibility),
    ("GET", "/r/{name:.+}", repository_page),
]
