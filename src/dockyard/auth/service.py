"""Access decisions for the HTTP layer: who is calling, and what they may do.

Permission rules live in ``accounts`` (queries) and ``permissions`` (levels); this module turns
them into token grants and repository filters, running the queries on the database's reader
threads.
"""

from __future__ import annotations

from dockyard.auth import accounts
from dockyard.auth.permissions import Principal, allowed_actions
from dockyard.auth.tokens import Access, TokenService
from dockyard.meta.db import Database
from dockyard.registry.errors import RegistryError
from dockyard.registry.names import validate_name

MAX_SCOPES = 32


class AuthService:
    def __init__(self, db: Database, tokens: TokenService) -> None:
        self.db = db
        self.tokens = tokens

    async def login(self, name: str, password: str) -> Principal | None:
        # Writes: a successful login may upgrade an old password hash.
        return await self.db.run(accounts.authenticate_password, name, password)

    async def current(self, principal: Principal) -> Principal | None:
        """The account behind a refresh token as it is now: gone or disabled gives None."""
        return await self.db.read(accounts.principal_by_id, principal.kind, principal.id)

    async def grant(self, principal: Principal, requested: list[Access]) -> list[Access]:
        """The subset of the requested scopes the principal holds. A partial (or empty) grant
        is not an error: the registry answers 401 when the token later falls short."""
        if len(requested) > MAX_SCOPES:
            raise RegistryError("DENIED", "too many scopes requested", {"max": MAX_SCOPES}, status=400)
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
            level = await self.db.read(accounts.repository_level, principal, scope.name)
            actions = allowed_actions(level, set(scope.actions))
            if actions:
                granted.append(Access("repository", scope.name, frozenset(actions)))
        return granted

    async def readable(self, principal: Principal, names: list[str]) -> list[str]:
        return await self.db.read(accounts.readable_repositories, principal, names)
