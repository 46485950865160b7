from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    PrimaryKeyConstraint,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from nexus.db.base import Base, created_at, tstz, updated_at, uuid_pk


class Library(Base):
    __tablename__ = "libraries"
    __table_args__ = (
        CheckConstraint("char_length(name) BETWEEN 1 AND 100", name="name_length"),
        Index(
            "uix_libraries_one_default_per_user",
            "owner_user_id",
            unique=True,
            postgresql_where=text("is_default"),
        ),
        Index("ix_libraries_owner_user_id", "owner_user_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    owner_user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(Text, nullable=False)
    is_default: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (
        PrimaryKeyConstraint("library_id", "user_id"),
        CheckConstraint("role IN ('admin', 'member')", name="role"),
        Index("ix_memberships_user_id_library_id_role", "user_id", "library_id", "role"),
    )

    library_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("libraries.id", ondelete="CASCADE")
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE")
    )
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = created_at()


class LibraryMedia(Base):
    __tablename__ = "library_media"
    __table_args__ = (
        PrimaryKeyConstraint("library_id", "media_id"),
        Index("ix_library_media_media_id_library_id", "media_id", "library_id"),
        # Keyset pagination of one library's media (newest first / oldest first).
        Index(
            "ix_library_media_library_id_created_at_media_id",
            "library_id",
            "created_at",
            "media_id",
        ),
    )

    library_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("libraries.id", ondelete="CASCADE")
    )
    media_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("media.id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = created_at()


class LibraryInvitation(Base):
    __tablename__ = "library_invitations"
    __table_args__ = (
        CheckConstraint("inviter_user_id <> invitee_user_id", name="not_self"),
        CheckConstraint("role IN ('admin', 'member')", name="role"),
        CheckConstraint("status IN ('pending', 'accepted', 'declined', 'revoked')", name="status"),
        CheckConstraint(
            "(status = 'pending') = (responded_at IS NULL)", name="responded_iff_not_pending"
        ),
        Index(
            "uix_library_invitations_one_pending",
            "library_id",
            "invitee_user_id",
            unique=True,
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_library_invitations_invitee_user_id_status", "invitee_user_id", "status"),
        Index("ix_library_invitations_library_id_status", "library_id", "status"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    library_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("libraries.id", ondelete="CASCADE"), nullable=False
    )
    inviter_user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    invitee_user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(
        String(16), nullable=False, server_default=text("'pending'")
    )
    created_at: Mapped[datetime] = created_at()
    responded_at: Mapped[datetime | None] = tstz()
