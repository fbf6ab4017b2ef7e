"""The Docker token service's JWTs: signing key, issuing and verifying.

Tokens are ES256 JWTs (distribution's token-auth spec) signed with a key generated at first start
and kept in the data folder, or given by configuration so that replicas share it. Access tokens
live for minutes and carry exactly the granted ``access`` list; refresh tokens (the OAuth2 flow
docker and podman use) live for weeks and carry only who they belong to, so every refresh
re-checks that the account still exists.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dockyard.auth.permissions import Principal

ISSUER = "dockyard"
ACCESS_TTL = 300
REFRESH_TTL = 30 * 24 * 3600
_LEEWAY = 5


class TokenError(Exception):
    """A token that is malformed, expired, for another audience, or not signed by us."""


def parse_key(pem: bytes, source: str) -> ec.EllipticCurvePrivateKey:
    """An EC private key (PEM, unencrypted); ValueError naming ``source`` otherwise."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{source} is not a PEM private key without a password: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"{source} is not an EC P-256 private key (ES256 tokens need one)")
    return key


def load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The key kept in the data folder, created on first start.

    Replicas or workers starting together on one folder must end up with one key: a token signed
    by one and checked by another would fail. So the new key is written in full to a file of
    this process's own and hard-linked into place, which succeeds for exactly one process; the
    others read the winner's key.
    """
    if path.exists():
        return parse_key(path.read_bytes(), str(path))
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return parse_key(path.read_bytes(), str(path))
    finally:
        os.unlink(tmp)
    return key


def signing_key(key_pem: str, key_file: str, data_dir: Path) -> ec.EllipticCurvePrivateKey:
    """The key from configuration (``token_key``, ``token_key_file``) when given, which is how
    replicas on several machines share one; otherwise the data folder's own."""
    if key_pem:
        return parse_key(key_pem.encode(), "token_key (DOCKYARD_TOKEN_KEY)")
    if key_file:
        try:
            pem = Path(key_file).read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read token_key_file {key_file}: {exc.strerror}") from None
        return parse_key(pem, f"token_key_file {key_file}")
    return load_or_create_key(data_dir / "auth" / "token.key")


@dataclass(frozen=True, slots=True)
class Access:
    type: str
    name: str
    actions: frozenset[str]

    def as_claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": sorted(self.actions)}


@dataclass(frozen=True, slots=True)
class Claims:
    principal: Principal
    access: tuple[Access, ...]
    expires_at: float
    token_id: str | None = None  # a personal access token or robot secret it was issued from

    def allows(self, type_: str, name: str, action: str) -> bool:
        return any(
            a.type == type_ and a.name == name and (action in a.actions or "*" in a.actions) for a in self.access
        )


class TokenService:
    def __init__(self, key: ec.EllipticCurvePrivateKey, service: str) -> None:
        self.service = service
        self._key = key
        self._public = key.public_key()
        der = self._public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.key_id = hashlib.sha256(der).hexdigest()[:16]
        self._verified: dict[str, Claims] = {}

    def _sign(self, payload: dict[str, Any]) -> str:
        return jwt.encode(payload, self._key, algorithm="ES256", headers={"kid": self.key_id})

    def _issue(self, principal: Principal, ttl: int, token_id: str | None, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "sub": principal.name,
            "aud": self.service,
            "iat": now,
            "nbf": now - _LEEWAY,
            "exp": now + ttl,
            "jti": secrets.token_hex(12),
            "dky": {"kind": principal.kind, "id": principal.id, "admin": principal.is_admin, "tok": token_id},
            **claims,
        }
        return self._sign(payload)

    def issue_access(self, principal: Principal, access: list[Access], token_id: str | None = None) -> tuple[str, int]:
        return self._issue(principal, ACCESS_TTL, token_id, access=[a.as_claim() for a in access]), ACCESS_TTL

    def issue_refresh(self, principal: Principal, token_id: str | None = None) -> str:
        """Refresh tokens carry who they belong to, never access: every use re-checks the account."""
        return self._issue(principal, REFRESH_TTL, token_id, typ="refresh")

    def _decode(self, token: str) -> dict[str, Any]:
        if len(token) > 16384:
            raise TokenError("token too large")
        try:
            return jwt.decode(
                token,
                self._public,
                algorithms=["ES256"],
                audience=self.service,
                issuer=ISSUER,
                leeway=_LEEWAY,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(str(exc)) from None

    def verify_access(self, token: str) -> Claims:
        """Claims of a valid access token. Verified tokens are remembered until they expire:
        an ECDSA check per request would cost more than the request itself."""
        cached = self._verified.get(token)
        now = time.time()
        if cached is not None and cached.expires_at + _LEEWAY > now:
            return cached
        payload = self._decode(token)
        if payload.get("typ") == "refresh":
            raise TokenError("a refresh token cannot be used as an access token")
        claims = _claims(payload)
        if len(self._verified) > 10000:
            self._verified = {t: c for t, c in self._verified.items() if c.expires_at + _LEEWAY > now}
            if len(self._verified) > 10000:
                self._verified.clear()
        self._verified[token] = claims
        return claims

    def verify_refresh(self, token: str) -> Claims:
        payload = self._decode(token)
        if payload.get("typ") != "refresh":
            raise TokenError("not a refresh token")
        return _claims(payload)


def _claims(payload: dict[str, Any]) -> Claims:
    try:
        info = payload.get("dky") or {}
        principal = Principal(
            str(info.get("kind", "user")), info.get("id"), str(payload["sub"]), bool(info.get("admin"))
        )
        access = tuple(
            Access(str(a["type"]), str(a["name"]), frozenset(str(x) for x in a["actions"]))
            for a in payload.get("access") or []
        )
        return Claims(principal, access, float(payload["exp"]), info.get("tok"))
    except (KeyError, TypeError, ValueError) as exc:
        raise TokenError(f"malformed claims: {exc}") from None


def parse_scope(scope: str) -> Access | None:
    """``repository:team/app:pull,push`` (or ``registry:catalog:*``); None when malformed."""
    if len(scope) > 1024 or scope.count(":") < 2:
        return None
    type_, rest = scope.split(":", 1)
    name, actions = rest.rsplit(":", 1)
    type_ = type_.split("(", 1)[0]  # "repository(plugin)" is the same resource type
    wanted = frozenset(a for a in actions.split(",") if a)
    if not type_ or not name or not wanted:
        return None
    return Access(type_, name, wanted)
