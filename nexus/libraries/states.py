"""Roles and the invitation state machine (SPEC §5)."""

from __future__ import annotations

from enum import StrEnum

from nexus.db.transitions import StateTable, Transition


class LibraryRole(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


class InviteStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    REVOKED = "revoked"


# to-state -> states it may be entered from (repeating a terminal action is idempotent)
INVITE_TRANSITIONS: dict[InviteStatus, frozenset[InviteStatus]] = {
    InviteStatus.ACCEPTED: frozenset({InviteStatus.PENDING}),
    InviteStatus.DECLINED: frozenset({InviteStatus.PENDING}),
    InviteStatus.REVOKED: frozenset({InviteStatus.PENDING}),
}
INVITE_STATES: StateTable[InviteStatus] = StateTable(
    "library_invitations", "status", ("id",), INVITE_TRANSITIONS
)
# The three answers to a pending invitation (`nexus.libraries.invites`: accept, decline, revoke).
_PENDING = frozenset({InviteStatus.PENDING})
ACCEPT = Transition(INVITE_STATES, _PENDING, InviteStatus.ACCEPTED)
DECLINE = Transition(INVITE_STATES, _PENDING, InviteStatus.DECLINED)
REVOKE = Transition(INVITE_STATES, _PENDING, InviteStatus.REVOKED)

NAME_MAX = 100


def clean_name(raw: str) -> str | None:
    """Trimmed library name, or None when empty or longer than 100 characters."""
    name = raw.strip()
    return name if 1 <= len(name) <= NAME_MAX else None
