"""Access decisions for the HTTP layer: who is calling, and what they may do.

Permission rules live in ``accounts`` (queries) and ``permissions`` (levels); this module turns
them into token grants and repository filters, running the queries on the database's reader
threads.

A login through a personal access token or a robot secret carries a *credential id* (``pat:12``,
``robot:3``). It goes into every JWT issued from that login, and is what lets a revocation reach
tokens already handed out: ``grant`` caps a PAT's grants at its scope, ``current`` refuses to
refresh from a dead credential, and ``credential_active`` is the (cached) check the registry
makes on each request.
"""

from __future__ import annotations

import asyncio
import time

from dockyard.auth import accounts, credentials
from dockyard.auth.permissions import ADMIN, NONE, Principal, allowed_actions
from dockyard.auth.throttle import LoginThrottle
from dockyard.auth.tokens import Access, TokenService
from dockyard.meta.db import Database
from dockyard.registry.errors import RegistryError
from dockyard.registry.names import validate_name

MAX_SCOPES = 32
CREDENTIAL_CHECK_TTL = 2.0
"""How long a credential check is reused: a revoked PAT or removed robot fails at most this long
after the revocation, at the cost of one query per credential per period instead of per request."""
_MAX_CHECKS = 10000


class AuthService:
    def __init__(self, db: Database, tokens: TokenService) -> None:
        self.db = db
        self.tokens = tokens
        self.throttle = LoginThrottle(db)
        # credential id -> (when the answer goes stale, the lookup). Requests that arrive while a
        # lookup runs share it, so a burst of requests with one token makes one query.
        self._checks: dict[str, tuple[float, asyncio.Future[bool]]] = {}
        self._clock = time.monotonic

    async def login(self, name: str, password: str) -> tuple[Principal, str | None] | None:
        """The principal behind a login and the credential id to embed in its tokens (None for a
        password), or None when the login is wrong.

        A password is checked with argon2 (~0.3 s on the writer thread, by design), a PAT or robot
        secret with SHA-256. So a login shaped like a secret (a robot's ``org+name``, or a
        ``dyp_`` PAT) is tried as one first, and only a failed PAT falls back to the password:
        a CI job's token fetch does not pay for a password check that cannot succeed. The result
        is the same as password-first, since no password and secret can both match.
        """
        if credentials.looks_like_secret(name, password):
            # Writes: a PAT login records when it was last used.
            found = await self.db.run(credentials.authenticate_secret, name, password)
            if found is not None or credentials.is_robot_name(name):
                return found
        # Writes: a successful login may upgrade an old password hash.
        principal = await self.db.run(accounts.authenticate_password, name, password)
        return (principal, None) if principal is not None else None

    async def current(self, principal: Principal, credential_id: str | None = None) -> Principal | None:
        """The account behind a refresh token as it is now: None when the account is gone or
        disabled, or the credential the refresh token came from was revoked, expired or removed."""
        if credential_id is not None and not await self.db.read(credentials.credential_active, credential_id):
            return None
        found = await self.db.read(accounts.principal_by_id, principal.kind, principal.id)
        # The name must match as well as the id: SQLite hands the id of the newest user out again
        # once that user is removed, and a removed user's token must not become the next user's.
        # Accounts are never renamed, so for a live account the two always agree.
        return found if found is not None and found.name == principal.name else None

    async def credential_active(self, credential_id: str) -> bool:
        """Whether the credential a token was issued from is still usable, as of at most
        ``CREDENTIAL_CHECK_TTL`` seconds ago."""
        now = self._clock()
        entry = self._checks.get(credential_id)
        if entry is None or entry[0] <= now:
            if len(self._checks) >= _MAX_CHECKS:
                self._checks = {k: v for k, v in self._checks.items() if v[0] > now}
                if len(self._checks) >= _MAX_CHECKS:
                    self._checks.clear()
            lookup = asyncio.ensure_future(self.db.read(credentials.credential_active, credential_id))
            # Retrieve a failure even if every waiter was cancelled, so it is not logged as lost.
            lookup.add_done_callback(lambda f: f.cancelled() or f.exception())
            entry = (now + CREDENTIAL_CHECK_TTL, lookup)
            self._checks[credential_id] = entry
        try:
            # Shielded: one cancelled request must not cancel the lookup the others wait for.
            return await asyncio.shield(entry[1])
        except Exception:
            if self._checks.get(credential_id) is entry:
                del self._checks[credential_id]  # do not cache a failed lookup
            raise

    async def grant(
        self, principal: Principal, requested: list[Access], credential_id: str | None = None
    ) -> list[Access]:
        """The subset of the requested scopes the principal holds. A partial (or empty) grant
        is not an error: the registry answers 401 when the token later falls short.

        With ``credential_id``, the credential's cap applies on top of the account's own level
        (a 'read' PAT pulls even where its user may push), and a dead credential gets nothing.
        """
        if len(requested) > MAX_SCOPES:
            raise RegistryError("DENIED", "too many scopes requested", {"max": MAX_SCOPES}, status=400)
        cap = ADMIN
        if credential_id is not None:
            found = await self.db.read(credentials.credential_cap, credential_id)
            cap = NONE if found is None else found
        granted: list[Access] = []
        for scope in requested:
            if scope.type == "registry" and scope.name == "catalog":
                # Everyone may ask for the catalog; it only lists what the caller can read.
                granted.append(Access("registry", "catalog", frozenset({"*"})))
                continue
            if scope.type != "repository":
                continue
            try:
                validate_name(scope.name)
            except RegistryError:
                continue
            level = min(cap, await self.db.read(accounts.repository_level, principal, scope.name))
            actions = allowed_actions(level, set(scope.actions))
            if actions:
                granted.append(Access("repository", scope.name, frozenset(actions)))
        return granted

    async def readable(self, principal: Principal, names: list[str]) -> list[str]:
        return await self.db.read(accounts.readable_repositories, principal, names)
