"""Names for the loose shapes that cross module boundaries with the database.

Rows themselves are typed where they leave their module (NamedTuples / dataclasses beside
the query that makes them, or a `Record` when the API shows the row as it is), except the
API's hot reads, whose rows stay driver records read by column name (`nexus.db.raw.Row`,
columns documented beside their query: a page of 50 is not copied into typed rows first);
these aliases are for what stays genuinely open: the values bound to a statement's
`:names`, and JSON objects read back from `jsonb`/`to_jsonb`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Row

BindParams = dict[str, object]
JsonObject = dict[str, object]

# A result row read inside the module whose query made it (typed rows leave the module).
ResultRow = Row[*tuple[Any, ...]]

# The keyset position of a page ordered by (timestamp, id): the last row already served.
TimeKey = tuple[datetime, uuid.UUID]


class Record(BaseModel):
    """A typed row that the API shows as it is: immutable like the dataclasses beside other
    queries, and declared once. A route's response model subclasses it, adding nothing but
    its schema name in the OpenAPI document (a docstring there would add a description)."""

    # from_attributes: the route's model reads the row itself (`Out.model_validate(row)`).
    model_config = ConfigDict(frozen=True, from_attributes=True)


def fields_of(row: ResultRow) -> dict[str, Any]:
    """A result row's columns by name, to build the typed row that leaves the module."""
    return dict(row._mapping)
