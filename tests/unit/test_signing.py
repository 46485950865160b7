"""Pre-signed URL tokens: HMAC over version, action, media id, expiry and nonce."""

from __future__ import annotations

import uuid

import pytest

from nexus.errors import NexusError
from nexus.uploads import signing

KEY = b"k" * 32
NOW = 1_800_000_000.0


def test_round_trip() -> None:
    media = uuid.uuid4()
    t = signing.sign(KEY, "upload", media, ttl_seconds=900, now=NOW)
    assert t.expires_at == int(NOW) + 900
    got = signing.verify(KEY, t.token, "upload", media, now=NOW + 899)
    assert (got.nonce, got.expires_at) == (t.nonce, t.expires_at)
    assert signing.sign(KEY, "upload", media, ttl_seconds=900, now=NOW).nonce != t.nonce


def _parts(token: str, index: int, value: str) -> str:
    parts = token.split(".")
    parts[index] = value
    return ".".join(parts)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t, m: (t, uuid.uuid4(), "upload", KEY, NOW),  # another media
        lambda t, m: (t, m, "download", KEY, NOW),  # another action
        lambda t, m: (t, m, "upload", b"x" * 32, NOW),  # another key
        lambda t, m: (t, m, "upload", KEY, NOW + 900),  # expired (exactly at expiry)
        lambda t, m: (_parts(t, 2, str(int(NOW) + 10_000)), m, "upload", KEY, NOW),
        lambda t, m: (_parts(t, 3, "other-nonce"), m, "upload", KEY, NOW),
        lambda t, m: (_parts(t, 4, "A" * 43), m, "upload", KEY, NOW),
        lambda t, m: (_parts(t, 0, "v2"), m, "upload", KEY, NOW),
        lambda t, m: (_parts(t, 2, "-1"), m, "upload", KEY, NOW),
        lambda t, m: (t + ".x", m, "upload", KEY, NOW),
        lambda t, m: ("", m, "upload", KEY, NOW),
        lambda t, m: (None, m, "upload", KEY, NOW),
        lambda t, m: ("x" * 600, m, "upload", KEY, NOW),
    ],
)
def test_every_change_is_forbidden(mutate: object) -> None:
    media = uuid.uuid4()
    token = signing.sign(KEY, "upload", media, ttl_seconds=900, now=NOW).token
    t, m, action, key, now = mutate(token, media)  # type: ignore[operator]
    with pytest.raises(NexusError) as info:
        signing.verify(key, t, action, m, now=now)
    assert info.value.code == "E_FORBIDDEN"


def test_tokens_are_url_safe() -> None:
    token = signing.sign(KEY, "download", uuid.uuid4(), ttl_seconds=60).token
    assert all(c.isalnum() or c in "-_." for c in token)


def test_signing_key_outside_production() -> None:
    from nexus.config import Settings

    explicit = Settings(upload_signing_key="e" * 40)
    assert explicit.upload_signing_key_bytes == b"e" * 40
    a = Settings(internal_secret="secret-a").upload_signing_key_bytes
    b = Settings(internal_secret="secret-b").upload_signing_key_bytes
    dev = Settings().upload_signing_key_bytes
    # Derived from the internal secret (every API process of a deployment agrees), never
    # the secret itself.
    assert len({a, b, dev}) == 3 and b"secret-a" not in a
    assert Settings(internal_secret="secret-a").upload_signing_key_bytes == a


@pytest.mark.parametrize(
    "expiry", ["²", "1²", "٣٣٣٣٣٣٣٣٣٣", "\uff11\uff18" + "\uff10" * 8, "+1", " 1", "1" * 13]
)
def test_non_ascii_or_odd_expiries_are_forbidden_not_crashes(expiry: str) -> None:
    media = uuid.uuid4()
    t = signing.sign(KEY, "download", media, ttl_seconds=900, now=NOW)
    with pytest.raises(NexusError) as info:
        signing.verify(KEY, _parts(t.token, 2, expiry), "download", media, now=NOW)
    assert info.value.code == "E_FORBIDDEN"
