"""Imports every model module so `Base.metadata` is complete (used by Alembic and tests)."""

from __future__ import annotations

from sqlalchemy import MetaData

from nexus.db.base import Base


def load_all_models() -> MetaData:
    from nexus.deadletters import models as _deadletters
    from nexus.idempotency import models as _idempotency
    from nexus.ingest import models as _ingest
    from nexus.jobs import models as _jobs
    from nexus.libraries import models as _libraries
    from nexus.media import models as _media
    from nexus.operations import models as _operations
    from nexus.operators import models as _operators
    from nexus.sharing import models as _sharing
    from nexus.uploads import models as _uploads
    from nexus.users import models as _users
    from nexus.webhooks import models as _webhooks
    from nexus.workers import models as _workers

    del _idempotency, _ingest, _jobs, _libraries, _media, _operations, _operators, _sharing
    del _deadletters, _uploads, _users, _webhooks, _workers
    return Base.metadata
