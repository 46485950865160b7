"""Request and response shapes of the library routes (SPEC §4)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from nexus.libraries.states import InviteStatus, LibraryRole


class _In(BaseModel):
    # Unknown fields are refused (400): a misspelt field must not be silently ignored.
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# ------------------------------------------------------------------------- inputs

# A library name: 1 to 100 characters after trimming, not blank (checked by the service).
NAME_DOC: dict[str, JsonValue] = {"minLength": 1, "maxLength": 100, "pattern": r"\S"}


class LibraryCreateIn(_In):
    # Length and blankness are the service's rule (E_NAME_INVALID), not a schema error;
    # the schema only documents them.
    name: str = Field(json_schema_extra=NAME_DOC)


class LibraryRenameIn(_In):
    name: str = Field(json_schema_extra=NAME_DOC)


class LibraryMediaIn(_In):
    media_id: uuid.UUID


class MemberRoleIn(_In):
    role: LibraryRole


class TransferOwnershipIn(_In):
    user_id: uuid.UUID


class InviteCreateIn(_In):
    invitee_user_id: uuid.UUID
    role: LibraryRole = LibraryRole.MEMBER


# ------------------------------------------------------------------------ outputs


class LibraryOut(_Out):
    id: uuid.UUID
    name: str
    owner_user_id: uuid.UUID
    is_default: bool
    role: LibraryRole
    created_at: datetime
    updated_at: datetime


class LibraryMemberOut(_Out):
    user_id: uuid.UUID
    role: LibraryRole
    is_owner: bool
    created_at: datetime


class LibraryInvitationOut(_Out):
    id: uuid.UUID
    library_id: uuid.UUID
    inviter_user_id: uuid.UUID
    invitee_user_id: uuid.UUID
    role: LibraryRole
    status: InviteStatus
    created_at: datetime
    responded_at: datetime | None


class InviteAcceptOut(_Out):
    invite: LibraryInvitationOut
    membership: LibraryMemberOut | None
    idempotent: bool
    backfill_job_status: str | None


class InviteRespondOut(_Out):
    invite: LibraryInvitationOut
    idempotent: bool
