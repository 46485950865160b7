"""Cursor pagination for every list route (SPEC §2).

A list takes `limit` (default 50, 1..200; otherwise 400 E_INVALID_REQUEST) and an opaque
`cursor`, and answers `{"data": [...], "page": {"next_cursor": str | null, "has_more": bool}}`.

The cursor is base64url (unpadded) of compact JSON `{"v": version, "s": scope, "k": key,
"h": digest}`: `scope` names the list it belongs to (a cursor of one list is refused by
another), `key` is the sort key of the last row served (keyset pagination: stable under
inserts and deletes, no offsets), `h` a digest of the rest, so an edited or truncated
cursor is refused (400 E_INVALID_CURSOR) rather than silently moving somewhere else. The
digest is an integrity check, not a secret: a forged cursor can only choose a starting
position, and every page re-applies the viewer's access filter.

`list_page` is the whole round of a list read in a unit of work: decode the cursor, fetch
`limit + 1` rows after it, split off the page, shape the items.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Generic, NamedTuple, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.errors import NexusError
from web.uow import unit_of_work

CURSOR_VERSION = 1
MAX_CURSOR_CHARS = 1024
DEFAULT_LIMIT = 50
MAX_LIMIT = 200

T = TypeVar("T")
Row = TypeVar("Row")
KeyPart = datetime | uuid.UUID | int | str
After = tuple[Any, ...] | None


class ListQuery(BaseModel):
    """Query string of every list route."""

    model_config = ConfigDict(extra="ignore")

    limit: int = Field(
        default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Items per page (1 to 200)."
    )
    cursor: str | None = Field(
        default=None,
        json_schema_extra={"maxLength": MAX_CURSOR_CHARS},  # checked: E_INVALID_CURSOR
        description="Opaque: the `page.next_cursor` of the previous page of the same list "
        "(same filters); anything else is 400 E_INVALID_CURSOR. Omit for the first page.",
    )


class Page(BaseModel):
    """Keyset pagination: pass `next_cursor` as `cursor` to get the next page."""

    next_cursor: str | None = Field(description="null on the last page.")
    has_more: bool


class Paged(BaseModel, Generic[T]):
    """`{"data": [...], "page": {...}}`."""

    data: list[T]
    page: Page


class InvalidCursor(NexusError):
    def __init__(self, reason: str) -> None:
        super().__init__("E_INVALID_CURSOR", f"invalid cursor: {reason}")


def _compact_json(value: Any, *, sort_keys: bool = False) -> bytes:
    """`json.dumps(value, separators=(",", ":"), sort_keys=sort_keys)` as bytes, for the
    lists, ints, bools and string-keyed dicts of a cursor. orjson writes the same bytes at
    a tenth of the cost, except for text beyond ASCII, which json escapes: that goes
    through json, so every cursor's bytes, and so its digest, stay what they were."""
    if _ascii_only(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
        except orjson.JSONEncodeError:
            pass  # beyond orjson (an int past 64 bits, deep nesting): a client's cursor
    return json.dumps(value, separators=(",", ":"), sort_keys=sort_keys).encode()


def _ascii_only(value: Any) -> bool:
    if isinstance(value, str):
        # json escapes DEL too (`\u007f`); orjson writes it as is.
        return value.isascii() and "\x7f" not in value
    if isinstance(value, list):
        return all(_ascii_only(v) for v in value)
    if isinstance(value, dict):
        return all(_ascii_only(k) and _ascii_only(v) for k, v in value.items())
    return isinstance(value, int)  # bools and ints; anything else takes json's way


def _digest(version: int, scope: str, key: list[Any]) -> str:
    raw = _compact_json([version, scope, key], sort_keys=True)
    return hashlib.sha256(b"nexus-cursor\x00" + raw).hexdigest()[:16]


def _dump_part(part: KeyPart) -> Any:
    if isinstance(part, datetime):
        if part.tzinfo is None:
            raise ValueError("cursor timestamps must be timezone-aware")
        return part.isoformat()
    if isinstance(part, uuid.UUID):
        return str(part)
    return part


def encode_cursor(scope: str, key: Sequence[KeyPart]) -> str:
    """The opaque cursor positioned after the row whose sort key is `key`."""
    parts = [_dump_part(p) for p in key]
    payload = {
        "v": CURSOR_VERSION,
        "s": scope,
        "k": parts,
        "h": _digest(CURSOR_VERSION, scope, parts),
    }
    raw = _compact_json(payload)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _load_part(value: Any, kind: type) -> KeyPart:
    if kind is datetime:
        if not isinstance(value, str):
            raise ValueError("timestamp")
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError("naive timestamp")
        return parsed
    if kind is uuid.UUID:
        if not isinstance(value, str):
            raise ValueError("uuid")
        return uuid.UUID(value)
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError("int")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise ValueError("str")
        return value
    raise TypeError(f"unsupported cursor key type {kind!r}")


def _payload(token: str) -> dict[str, Any]:
    if not token or len(token) > MAX_CURSOR_CHARS:
        raise InvalidCursor("wrong length")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidCursor("not a cursor") from exc
    if not isinstance(payload, dict):
        raise InvalidCursor("not a cursor")
    return payload


def decode_cursor(token: str, scope: str, types: Sequence[type]) -> tuple[KeyPart, ...]:
    """The sort key stored in `token`; 400 E_INVALID_CURSOR unless it is an unaltered
    cursor of this version, of this list (`scope`), with a key of these `types`."""
    payload = _payload(token)
    version, got_scope, key = payload.get("v"), payload.get("s"), payload.get("k")
    if version != CURSOR_VERSION:
        raise InvalidCursor("unsupported version")
    if got_scope != scope:
        raise InvalidCursor("cursor of another list")
    if not isinstance(key, list) or len(key) != len(types):
        raise InvalidCursor("malformed key")
    if payload.get("h") != _digest(version, scope, key):
        raise InvalidCursor("altered cursor")
    try:
        return tuple(_load_part(value, kind) for value, kind in zip(key, types, strict=True))
    except ValueError as exc:
        raise InvalidCursor("malformed key") from exc


def after_key(cursor: str | None, scope: str, types: Sequence[type]) -> tuple[Any, ...] | None:
    """Decoded cursor, or None for the first page."""
    return None if cursor is None else decode_cursor(cursor, scope, types)


def page_of(
    rows: Sequence[Row], limit: int, scope: str, key: Callable[[Row], Sequence[KeyPart]]
) -> tuple[list[Row], Page]:
    """Split `rows` (fetched with `limit + 1`) into the page and its `page` block."""
    items = list(rows[:limit])
    has_more = len(rows) > limit
    next_cursor = encode_cursor(scope, key(items[-1])) if has_more and items else None
    return items, Page(next_cursor=next_cursor, has_more=has_more)


class Keyset(NamedTuple):
    """A list's sort key: the types of its parts (to decode a cursor) and how to read it
    from a row."""

    types: tuple[type, ...]
    of: Callable[[Any], Sequence[KeyPart]]


BY_ID = Keyset((int,), lambda row: (row.id,))
TIME_KEY = (datetime, uuid.UUID)
BY_CREATED = Keyset(TIME_KEY, lambda row: (row.created_at, row.id))


def after_id(after: After) -> int | None:
    """The id of a `BY_ID` list's cursor (None on the first page)."""
    return None if after is None else int(after[0])


async def list_page(
    query: ListQuery,
    scope: str,
    keyset: Keyset,
    fetch: Callable[[AsyncSession, After], Awaitable[Sequence[Any]]],
    out: Callable[[Any], T],
) -> Paged[T]:
    """One page of `scope`: `fetch(session, after)` (up to `query.limit + 1` rows after
    the cursor's key, in the list's order) in a unit of work, each item shaped by `out`
    (a response model's `model_validate`). 400 E_INVALID_CURSOR for a cursor that is not
    one of this list."""
    after = after_key(query.cursor, scope, keyset.types)
    async with unit_of_work() as uow:
        rows = await fetch(uow.session, after)
    items, page = page_of(rows, query.limit, scope, keyset.of)
    return Paged(data=[out(r) for r in items], page=page)
