from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.orm import Mapped

from nexus.db.base import Base, created_at, uuid_pk


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = uuid_pk()
    created_at: Mapped[datetime] = created_at()
