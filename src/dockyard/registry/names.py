"""Repository names and tags, checked against the spec's grammar."""

from __future__ import annotations

import re

from dockyard.registry.errors import RegistryError

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
# Distribution caps names at 255 characters so that they fit in a path and a Host:port/name ref.
MAX_NAME_LENGTH = 255


def validate_name(name: str) -> str:
    if not name or len(name) > MAX_NAME_LENGTH or not _NAME_RE.fullmatch(name):
        raise RegistryError("NAME_INVALID", detail={"name": name})
    return name


def validate_tag(tag: str) -> str:
    if not _TAG_RE.fullmatch(tag or ""):
        raise RegistryError("MANIFEST_INVALID", "invalid tag", {"tag": tag}, status=400)
    return tag


def is_valid_tag(tag: str) -> bool:
    return bool(_TAG_RE.fullmatch(tag or ""))
