"""Opaque cursors: round trip, and every way a bad one is refused (E_INVALID_CURSOR)."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from nexus.errors import NexusError
from web.pagination import (
    MAX_CURSOR_CHARS,
    ListQuery,
    after_key,
    decode_cursor,
    encode_cursor,
    page_of,
)

KEY = (datetime, uuid.UUID)


def _raw(token: str) -> dict[str, object]:
    return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))


def _token(payload: object) -> str:
    raw = json.dumps(payload).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _invalid(token: str, scope: str = "s", types: tuple[type, ...] = KEY) -> None:
    with pytest.raises(NexusError) as info:
        decode_cursor(token, scope, types)
    assert info.value.code == "E_INVALID_CURSOR"


def test_round_trip_keeps_microseconds_and_zone() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    uid = uuid.uuid4()
    token = encode_cursor("s", (at, uid))
    assert "=" not in token and "+" not in token and "/" not in token
    assert decode_cursor(token, "s", KEY) == (at, uid)


def test_round_trip_int_and_str() -> None:
    assert decode_cursor(encode_cursor("f", (7, "x")), "f", (int, str)) == (7, "x")


def test_first_page_has_no_key() -> None:
    assert after_key(None, "s", KEY) is None


@pytest.mark.parametrize(
    "token",
    ["", "!!!", "bm90IGpzb24", "W10", _token("str"), _token([1, 2]), "x" * (MAX_CURSOR_CHARS + 1)],
)
def test_garbage_is_refused(token: str) -> None:
    _invalid(token)


def test_other_scope_is_refused() -> None:
    _invalid(encode_cursor("libraries", (datetime.now(UTC), uuid.uuid4())), scope="members")


def test_tampered_key_is_refused() -> None:
    token = encode_cursor("s", (datetime.now(UTC), uuid.uuid4()))
    payload = _raw(token)
    payload["k"] = [payload["k"][0], str(uuid.uuid4())]  # type: ignore[index]
    _invalid(_token(payload))


def test_tampered_scope_or_digest_is_refused() -> None:
    payload = _raw(encode_cursor("a", (datetime.now(UTC), uuid.uuid4())))
    _invalid(_token({**payload, "s": "s"}))
    _invalid(_token({**payload, "s": "a", "h": "0" * 16}), scope="a")
    del payload["h"]
    _invalid(_token(payload), scope="a")


def test_other_version_is_refused() -> None:
    payload = _raw(encode_cursor("s", (datetime.now(UTC), uuid.uuid4())))
    _invalid(_token({**payload, "v": 2}))


@pytest.mark.parametrize(
    ("key", "types"),
    [
        ((1, 2), KEY),  # wrong types, but a valid digest
        (("2026-01-01T00:00:00", str(uuid.uuid4())), KEY),  # naive timestamp
        (("2026-01-01T00:00:00+00:00", "not-a-uuid"), KEY),
        ((True,), (int,)),
        (("1",), (int,)),
        ((1,), KEY),  # wrong arity
    ],
)
def test_malformed_key_with_valid_digest_is_refused(
    key: tuple[object, ...], types: tuple[type, ...]
) -> None:
    from web.pagination import _digest

    parts = list(key)
    _invalid(_token({"v": 1, "s": "s", "k": parts, "h": _digest(1, "s", parts)}), types=types)


def test_naive_timestamps_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        encode_cursor("s", (datetime(2026, 1, 1), uuid.uuid4()))


def test_page_of() -> None:
    rows = [1, 2, 3, 4]
    items, page = page_of(rows, 3, "n", lambda r: (r,))
    assert items == [1, 2, 3] and page.has_more
    assert page.next_cursor is not None
    assert decode_cursor(page.next_cursor, "n", (int,)) == (3,)
    items, page = page_of(rows, 4, "n", lambda r: (r,))
    assert items == rows and page.next_cursor is None and not page.has_more
    items, page = page_of([], 4, "n", lambda r: (r,))
    assert items == [] and not page.has_more


@pytest.mark.parametrize("limit", [0, -1, 201, "x", "1.5"])
def test_limit_bounds(limit: object) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        ListQuery.model_validate({"limit": limit})


def test_limit_default_and_edges() -> None:
    assert ListQuery.model_validate({}).limit == 50
    assert ListQuery.model_validate({"limit": "1"}).limit == 1
    assert ListQuery.model_validate({"limit": "200"}).limit == 200


def _json_cursor(scope: str, parts: list[object]) -> str:
    """A cursor as the standard library's json wrote it (before orjson did): the bytes a
    client may still hold across a deploy."""
    digest_raw = json.dumps([1, scope, parts], separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(b"nexus-cursor\x00" + digest_raw.encode()).hexdigest()[:16]
    payload = {"v": 1, "s": scope, "k": parts, "h": digest}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(
    ("scope", "key", "parts"),
    [
        (
            "library-media:1",
            (datetime(2026, 3, 1, 10, 0, 0, 230000, tzinfo=UTC), uuid.UUID(int=7)),
            ["2026-03-01T10:00:00.230000+00:00", str(uuid.UUID(int=7))],
        ),
        ("outbox", (2**63 - 1,), [2**63 - 1]),
        ("members:é", ("Zoë", True), ["Zoë", True]),  # beyond ASCII: json's escapes
        ("names", ('quote " back \\ line \n',), ['quote " back \\ line \n']),
        ("names", ("del \x7f",), ["del \x7f"]),  # json escapes DEL, orjson would not
    ],
)
def test_cursor_bytes_are_the_json_modules(
    scope: str, key: tuple[object, ...], parts: list[object]
) -> None:
    token = encode_cursor(scope, key)  # type: ignore[arg-type]
    assert token == _json_cursor(scope, parts)


def _deep(levels: int) -> list[object]:
    nested: list[object] = [0]
    for _ in range(levels):
        nested = [nested]
    return nested


@pytest.mark.parametrize(
    "key",
    [[2**64], _deep(300)],  # an int past 64 bits; nesting past orjson's limit
    ids=["int-past-64-bits", "nested-300-deep"],
)
def test_a_forged_key_beyond_the_encoder_is_refused_not_a_crash(key: list[object]) -> None:
    token = _token({"v": 1, "s": "s", "k": key, "h": "0000000000000000"})
    assert len(token) <= MAX_CURSOR_CHARS
    _invalid(token, types=(int,))
