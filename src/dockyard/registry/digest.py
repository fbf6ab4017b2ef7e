"""Digest parsing and hashing names.

Only algorithms we can verify are accepted: a digest we cannot check would let unverified
bytes become visible, which the data-safety rules forbid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dockyard.registry.errors import RegistryError

# The spec's grammar: algorithm-component ([+._-] algorithm-component)* ":" encoded
_DIGEST_RE = re.compile(r"([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")
# Registered algorithms and their encoded form (lower-case hex of a fixed length).
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
_HEX_RE = re.compile(r"[a-f0-9]+")


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def parse_digest(value: str) -> Digest:
    """Parse and validate ``algorithm:hex``; raise DIGEST_INVALID for anything else."""
    match = _DIGEST_RE.fullmatch(value or "")
    if not match:
        raise RegistryError("DIGEST_INVALID", "invalid digest", {"digest": value})
    algorithm, encoded = match.groups()
    length = ALGORITHMS.get(algorithm)
    if length is None:
        raise RegistryError("DIGEST_INVALID", "unsupported digest algorithm", {"digest": value})
    if len(encoded) != length or not _HEX_RE.fullmatch(encoded):
        raise RegistryError("DIGEST_INVALID", "invalid digest encoding", {"digest": value})
    return Digest(algorithm, encoded)


def looks_like_digest(reference: str) -> bool:
    """A manifest reference is a digest iff it contains ':' (tags cannot)."""
    return ":" in reference
