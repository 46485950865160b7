"""`nexus.db.raw.utc_text`: PostgreSQL renders a timestamptz as exactly the text the API
writes for the `datetime` asyncpg would have built (`web.envelope.json_response`), in any
session time zone, so hot pages that select it answer the same bytes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import orjson
import pytest
from sqlalchemy.engine import make_url

from nexus.db.raw import parse_utc_text, utc_text
from nexus.db.readpool import asyncpg_dsn

INSTANTS = [
    datetime(2026, 12, 1, 19, 1, 36, 231138, tzinfo=UTC),
    datetime(2026, 12, 1, 19, 1, 36, tzinfo=UTC),  # no microseconds: no fraction
    datetime(2026, 12, 1, 19, 1, 36, 230000, tzinfo=UTC),  # trailing zeros kept
    datetime(2026, 12, 1, 19, 1, 36, 1, tzinfo=UTC),
    datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(1969, 7, 20, 20, 17, 40, tzinfo=UTC),
    datetime(2000, 2, 29, 0, 0, 0, 500000, tzinfo=UTC),
    # Bound in another zone: asyncpg reads every timestamptz back in UTC.
    datetime(2026, 3, 29, 2, 30, 0, 120, tzinfo=timezone(timedelta(hours=5, minutes=30))),
]


def _api_text(value: datetime) -> str:
    """What the API wrote for this instant as asyncpg decodes it (in UTC)."""
    return str(orjson.loads(orjson.dumps(value.astimezone(UTC), option=orjson.OPT_UTC_Z)))


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata"])
async def test_utc_text_is_the_apis_text_for_every_instant(db_url: str, zone: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(make_url(db_url)))
    try:
        await conn.execute(f"SET TimeZone = '{zone}'")
        await conn.execute("SET DateStyle = 'SQL, DMY'")
        rows = await conn.fetch(
            f"SELECT t.v AS value, {utc_text('t.v')} AS text "
            "FROM unnest(CAST($1 AS timestamptz[])) AS t(v)",
            INSTANTS,
        )
    finally:
        await conn.close()
    assert [r["text"] for r in rows] == [_api_text(r["value"]) for r in rows]
    assert [r["text"] for r in rows] == [_api_text(v) for v in INSTANTS]
    # The text reads back as the same instant (a page's cursor key is read from it).
    assert [parse_utc_text(r["text"]) for r in rows] == INSTANTS
    assert all(parse_utc_text(r["text"]).utcoffset() == timedelta(0) for r in rows)
