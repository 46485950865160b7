"""Imports every model module so `Base.metadata` is complete (used by Alembic and tests)."""

from __future__ import annotations

from sqlalchemy import MetaData

from nexus.db.base import Base


def load_all_models() -> MetaData:
    from nexus.idempotency import models as _idempotency
    from nexus.ingest import models as _ingest
    from nexus.jobs import models as _jobs
    from nexus.libraries import models as _libraries
    from nexus.media import models as _media
    from nexus.operators import models as _operators
    from nexus.sharing import models as _sharing
    from nexus.uploads import models as _uploads
    from nexus.users import models as _users

    del _idempotency, _ingest, _jobs, _libraries, _media, _operators, _sharing, _uploads
    del _users
    return Base.metadata
