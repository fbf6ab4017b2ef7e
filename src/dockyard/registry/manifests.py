"""Parsing and validating manifests before they are stored.

A registry that stores whatever it is sent serves broken images later; we check structure
here and existence of referenced content in ``service.Registry.put_manifest``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dockyard.registry import mediatypes as mt
from dockyard.registry.digest import parse_digest
from dockyard.registry.errors import RegistryError

MAX_MANIFEST_SIZE = 4 * 1024 * 1024
# The stored artifact type (artifactType, else the config's mediaType) is a media type: RFC 6838
# allows 127 characters each for type and subtype. Its column is that wide, which PostgreSQL
# enforces (SQLite does not), and PostgreSQL text cannot hold NUL: refuse both here, alike on both.
MAX_MEDIA_TYPE = 255
_GENERIC_TYPES = {"", "application/json", "application/octet-stream", "text/plain"}


@dataclass(slots=True)
class ParsedManifest:
    media_type: str
    blobs: list[str] = field(default_factory=list)  # config and distributable layers
    children: list[str] = field(default_factory=list)  # index entries
    subject: str | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None


def _invalid(message: str, **detail: Any) -> RegistryError:
    return RegistryError("MANIFEST_INVALID", message, detail or None)


def _descriptor(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(f"{where} is not a descriptor object")
    if not isinstance(value.get("mediaType"), str) or not value["mediaType"]:
        raise _invalid(f"{where} has no mediaType")
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where} has an invalid size", size=size)
    digest = value.get("digest")
    if not isinstance(digest, str):
        raise _invalid(f"{where} has no digest")
    try:
        parse_digest(digest)
    except RegistryError:
        raise _invalid(f"{where} has an invalid digest", digest=digest) from None
    return value


def _media_type(content_type: str, body: dict[str, Any]) -> str:
    declared = body.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType must be a string")
    header = content_type.split(";")[0].strip().lower()
    if header in _GENERIC_TYPES:
        header = ""
    if header and declared and header != declared:
        raise _invalid("Content-Type does not match the manifest's mediaType", contentType=header, mediaType=declared)
    media_type = header or declared
    if not media_type:
        # An OCI manifest may omit mediaType; infer it from its shape.
        media_type = mt.OCI_INDEX if "manifests" in body else mt.OCI_MANIFEST
    if media_type not in mt.MANIFEST_TYPES:
        raise _invalid("unsupported manifest media type", mediaType=media_type)
    return media_type


def parse_manifest(content: bytes, content_type: str) -> ParsedManifest:
    if len(content) > MAX_MANIFEST_SIZE:
        raise RegistryError(
            "SIZE_INVALID",
            f"manifest is larger than the {MAX_MANIFEST_SIZE} byte limit",
            {"size": len(content), "limit": MAX_MANIFEST_SIZE},
            status=413,
        )
    try:
        body = json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _invalid("manifest is not valid JSON", error=str(exc)) from None
    if not isinstance(body, dict):
        raise _invalid("manifest is not a JSON object")
    if body.get("schemaVersion") != 2:
        raise _invalid("unsupported schemaVersion", schemaVersion=body.get("schemaVersion"))
    parsed = ParsedManifest(_media_type(content_type, body))

    annotations = body.get("annotations")
    if annotations is not None:
        if not isinstance(annotations, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            raise _invalid("annotations must map strings to strings")
        parsed.annotations = annotations
    artifact_type = body.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType must be a string")

    if parsed.media_type in mt.INDEXES:
        entries = body.get("manifests")
        if not isinstance(entries, list):
            raise _invalid("index has no manifests list")
        for i, entry in enumerate(entries):
            parsed.children.append(_descriptor(entry, f"manifests[{i}]")["digest"])
        parsed.artifact_type = artifact_type
    else:
        config = _descriptor(body.get("config"), "config")
        layers = body.get("layers")
        if not isinstance(layers, list):
            raise _invalid("manifest has no layers list")
        parsed.blobs.append(config["digest"])
        for i, layer in enumerate(layers):
            layer = _descriptor(layer, f"layers[{i}]")
            if not mt.is_non_distributable(layer["mediaType"]):
                parsed.blobs.append(layer["digest"])
        # The referrers API reports artifactType, falling back to the config's media type.
        parsed.artifact_type = artifact_type or config["mediaType"]

    if "subject" in body and body["subject"] is not None:
        parsed.subject = _descriptor(body["subject"], "subject")["digest"]
    if parsed.artifact_type is not None:
        if len(parsed.artifact_type) > MAX_MEDIA_TYPE or "\x00" in parsed.artifact_type:
            raise _invalid(
                f"artifactType (or the config's mediaType) must be a media type of at most {MAX_MEDIA_TYPE} characters"
            )
    return parsed


def select_platform(content: bytes, accept: set[str]) -> str | None:
    """For a client that cannot read an index: the digest of its linux/amd64 (or first
    acceptable) image, as Distribution does for old docker clients."""
    try:
        entries = json.loads(content).get("manifests", [])
    except (ValueError, AttributeError, RecursionError):
        return None
    usable = [e for e in entries if isinstance(e, dict) and e.get("mediaType") in accept]
    for entry in usable:
        platform = entry.get("platform") or {}
        if platform.get("os") == "linux" and platform.get("architecture") == "amd64":
            return entry["digest"]
    return usable[0]["digest"] if usable else None
