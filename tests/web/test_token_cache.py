"""Verified JWTs are remembered per process until they expire (exp + leeway)."""

from __future__ import annotations

import time
import types
import uuid
from typing import Any

import jwt
import pytest

from nexus.config import Settings
from nexus.errors import Unauthenticated
from tests.support.webapp import make_token
from web import tokens
from web.tokens import LEEWAY_SECONDS, TokenVerifier


def _counting_decode(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = jwt.decode

    def decode(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(tokens.jwt, "decode", decode)
    return calls


async def test_a_verified_token_is_not_decoded_again(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _counting_decode(monkeypatch)
    verifier = TokenVerifier(settings)
    sub = uuid.uuid4()
    token = make_token(sub)
    assert await verifier.verify(token) == sub
    assert await verifier.verify(token) == sub
    assert calls == [token]
    # A token that fails is never remembered: each attempt is verified (and refused).
    bad = make_token(sub, secret="another-secret-of-enough-length-for-hs256")
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            await verifier.verify(bad)
    assert calls == [token, bad, bad]


async def test_a_cached_token_expires_with_its_leeway(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = TokenVerifier(settings)
    exp = int(time.time()) + 100
    token = make_token(exp=exp)
    await verifier.verify(token)
    clock = types.SimpleNamespace(time=lambda: exp + LEEWAY_SECONDS + 1, monotonic=time.monotonic)
    monkeypatch.setattr(tokens, "time", clock)
    # PyJWT reads the real clock, so the cache alone decides: it must not answer.
    monkeypatch.setattr(
        tokens.jwt, "decode", lambda *a, **k: (_ for _ in ()).throw(jwt.ExpiredSignatureError())
    )
    with pytest.raises(Unauthenticated):
        await verifier.verify(token)


async def test_the_cache_is_bounded(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "VERIFIED_CACHE_SIZE", 3)
    calls = _counting_decode(monkeypatch)
    verifier = TokenVerifier(settings)
    issued = [make_token() for _ in range(4)]
    for token in issued:
        await verifier.verify(token)
    await verifier.verify(issued[-1])  # still cached
    await verifier.verify(issued[0])  # evicted (least recently used): verified again
    assert calls == [*issued, issued[0]]
