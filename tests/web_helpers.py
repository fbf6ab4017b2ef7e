"""Driving the web UI over HTTP the way a browser does: cookies, forms and their CSRF tokens."""

from __future__ import annotations

import re
from typing import Any

import httpx

_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def sign_in(client: httpx.Client, username: str, password: str) -> httpx.Response:
    """POST the sign-in form; the session cookie stays in ``client``."""
    return client.post("/login", data={"username": username, "password": password, "next": "/"})


def post_form(client: httpx.Client, page: str, action: str, data: dict[str, Any]) -> httpx.Response:
    """Load ``page`` for its CSRF token, then submit ``data`` to ``action`` as that page's form would."""
    token = csrf_of(client.get(page).text)
    return client.post(action, data={**data, "csrf": token})
