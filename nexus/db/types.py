"""Names for the loose shapes that cross module boundaries with the database.

Rows themselves are typed where they leave their module (NamedTuples / dataclasses beside
the query that makes them), except the API's hot reads, whose rows stay driver records
read by column name (`nexus.db.raw.Row`, columns documented beside their query: a page of
50 is not copied into typed rows first); these aliases are for what stays genuinely open:
the values bound to a statement's `:names`, and JSON objects read back from
`jsonb`/`to_jsonb`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row

BindParams = dict[str, object]
JsonObject = dict[str, object]

# A result row read inside the module whose query made it (typed rows leave the module).
ResultRow = Row[*tuple[Any, ...]]

# The keyset position of a page ordered by (timestamp, id): the last row already served.
TimeKey = tuple[datetime, uuid.UUID]


def fields_of(row: ResultRow) -> dict[str, Any]:
    """A result row's columns by name, to build the typed row that leaves the module."""
    return dict(row._mapping)
