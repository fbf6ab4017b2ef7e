"""Permission levels and the registry actions they allow.

Levels are ordered: each includes the ones below it (Docker Hub's read-only / read-write /
admin, with delete between write and admin as in Harbor).
"""

from __future__ import annotations

from dataclasses import dataclass

NONE, READ, WRITE, DELETE, ADMIN = 0, 1, 2, 3, 4
LEVELS = {"read": READ, "write": WRITE, "delete": DELETE, "admin": ADMIN}
LEVEL_NAMES = {v: k for k, v in LEVELS.items()}

# The token spec's repository actions, and the level each needs.
ACTION_LEVELS = {"pull": READ, "push": WRITE, "delete": DELETE, "*": ADMIN}


def allowed_actions(level: int, requested: set[str]) -> set[str]:
    """The subset of ``requested`` actions that ``level`` permits (a partial grant, never an error)."""
    return {a for a in requested if a in ACTION_LEVELS and level >= ACTION_LEVELS[a]}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user, a robot account, or nobody (anonymous)."""

    kind: str  # "user" | "robot" | "anonymous"
    id: int | None
    name: str
    is_admin: bool = False

    @property
    def anonymous(self) -> bool:
        return self.kind == "anonymous"


ANONYMOUS = Principal("anonymous", None, "", False)
