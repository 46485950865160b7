"""JWKS verification against a real HTTP JWKS server: caching, kid rotation, outages."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from email.message import Message
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from nexus.config import Settings
from tests.support.http_server import Answer, LocalHttpServer
from tests.support.processes import poll
from tests.support.services import free_port
from tests.support.webapp import Api, AppFactory, make_token
from web.state import nexus_state


class SigningKey:
    def __init__(self, kid: str, kind: str = "RSA") -> None:
        self.kid = kid
        if kind == "RSA":
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.alg = "RS256"
            jwk = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            self.alg = "ES256"
            jwk = ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        self.jwk = {**jwk, "kid": kid, "use": "sig", "alg": self.alg}

    def token(self, sub: object | None = None, *, alg: str | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "sub": str(sub or uuid.uuid4()),
            "iss": "nexus",
            "aud": "authenticated",
            "exp": now + 300,
            **claims,
        }
        return jwt.encode(
            payload, self.private, algorithm=alg or self.alg, headers={"kid": self.kid}
        )


class JwksServer(LocalHttpServer):
    """Serves `keys` as a JWKS document on a free port and counts the fetches."""

    def __init__(self, port: int = 0) -> None:
        super().__init__(port)
        self.keys: list[dict[str, Any]] = []
        self.hits = 0
        self.url = f"{self.base_url}/.well-known/jwks.json"

    def on_get(self, path: str, headers: Message, body: bytes) -> Answer:
        self.hits += 1
        document = json.dumps({"keys": self.keys}).encode()
        return 200, {"Content-Type": "application/json"}, document


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    with JwksServer() as server:
        yield server


@pytest.fixture
def rsa_key() -> SigningKey:
    return SigningKey("rsa-1")


async def _me(api: Api, token: str) -> tuple[int, Any]:
    r = await api.get("/me", token=token)
    return r.status_code, await r.get_json()


def _jwks_settings(settings: Settings, url: str, **extra: Any) -> Settings:
    return settings.model_copy(update={"jwks_url": url, "jwt_hs256_secret": None, **extra})


async def test_rs256_and_es256_tokens_verify_with_one_cached_fetch(
    build_app: AppFactory, settings: Settings, jwks_server: JwksServer, rsa_key: SigningKey
) -> None:
    ec_key = SigningKey("ec-1", "EC")
    jwks_server.keys = [rsa_key.jwk, ec_key.jwk]
    app = build_app(settings=_jwks_settings(settings, jwks_server.url))
    async with app.test_app():
        api = Api(app.test_client())
        sub = uuid.uuid4()
        status, payload = await _me(api, rsa_key.token(sub))
        assert status == 200 and payload["data"]["user_id"] == str(sub)
        assert (await _me(api, ec_key.token(sub)))[0] == 200
        assert (await _me(api, rsa_key.token()))[0] == 200
    assert jwks_server.hits == 1


async def test_hs256_is_refused_when_only_jwks_is_configured(
    build_app: AppFactory, settings: Settings, jwks_server: JwksServer, rsa_key: SigningKey
) -> None:
    jwks_server.keys = [rsa_key.jwk]
    app = build_app(settings=_jwks_settings(settings, jwks_server.url))
    async with app.test_app():
        status, payload = await _me(Api(app.test_client()), make_token())
    assert (status, payload["error"]["code"]) == (401, "E_UNAUTHENTICATED")


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": int(time.time()) - 120},
        {"iss": "elsewhere"},
        {"aud": "elsewhere"},
        {"sub": "not-a-uuid"},
    ],
)
async def test_bad_claims_are_401(
    build_app: AppFactory,
    settings: Settings,
    jwks_server: JwksServer,
    rsa_key: SigningKey,
    claims: dict[str, Any],
) -> None:
    jwks_server.keys = [rsa_key.jwk]
    app = build_app(settings=_jwks_settings(settings, jwks_server.url))
    async with app.test_app():
        status, payload = await _me(Api(app.test_client()), rsa_key.token(**claims))
    assert (status, payload["error"]["code"]) == (401, "E_UNAUTHENTICATED")


async def test_signature_from_a_key_not_in_the_set_is_401(
    build_app: AppFactory, settings: Settings, jwks_server: JwksServer, rsa_key: SigningKey
) -> None:
    impostor = SigningKey(rsa_key.kid)  # same kid, different key
    jwks_server.keys = [rsa_key.jwk]
    app = build_app(settings=_jwks_settings(settings, jwks_server.url))
    async with app.test_app():
        status, _ = await _me(Api(app.test_client()), impostor.token())
    assert status == 401


async def test_algorithm_must_match_the_key(
    build_app: AppFactory, settings: Settings, jwks_server: JwksServer
) -> None:
    ec_key = SigningKey("ec-1", "EC")
    jwks_server.keys = [ec_key.jwk]
    # An RS256 header naming an EC key: refused before any signature maths.
    forged = jwt.encode(
        {
            "sub": str(uuid.uuid4()),
            "iss": "nexus",
            "aud": "authenticated",
            "exp": int(time.time()) + 60,
        },
        SigningKey("x").private,
        algorithm="RS256",
        headers={"kid": "ec-1"},
    )
    app = build_app(settings=_jwks_settings(settings, jwks_server.url))
    async with app.test_app():
        api = Api(app.test_client())
        assert (await _me(api, forged))[0] == 401
        no_kid = jwt.encode({"sub": str(uuid.uuid4())}, ec_key.private, algorithm="ES256")
        assert (await _me(api, no_kid))[0] == 401


async def test_unknown_kid_triggers_one_refresh(
    build_app: AppFactory, settings: Settings, jwks_server: JwksServer, rsa_key: SigningKey
) -> None:
    jwks_server.keys = [rsa_key.jwk]
    app = build_app(settings=_jwks_settings(settings, jwks_server.url))
    async with app.test_app():
        api = Api(app.test_client())
        assert (await _me(api, rsa_key.token()))[0] == 200
        assert jwks_server.hits == 1

        rotated = SigningKey("rsa-2")
        jwks_server.keys = [rsa_key.jwk, rotated.jwk]
        assert (await _me(api, rotated.token()))[0] == 200
        assert jwks_server.hits == 2  # exactly one refresh for the new kid

        assert (await _me(api, rotated.token()))[0] == 200
        assert jwks_server.hits == 2  # now cached

        # A kid nobody publishes: 401 after (at most) one refresh, and forced refreshes
        # are rate-limited, so a flood of unknown kids does not hammer the JWKS.
        ghost = SigningKey("ghost")
        for _ in range(5):
            assert (await _me(api, ghost.token()))[0] == 401
        assert jwks_server.hits == 2  # the rotation refresh just happened: rate-limited

        nexus_state(app).verifier.jwks.min_refresh_interval = 0  # type: ignore[union-attr]
        assert (await _me(api, ghost.token()))[0] == 401
        assert jwks_server.hits == 3


async def test_cache_expires(
    build_app: AppFactory, settings: Settings, jwks_server: JwksServer, rsa_key: SigningKey
) -> None:
    jwks_server.keys = [rsa_key.jwk]
    app = build_app(settings=_jwks_settings(settings, jwks_server.url, jwks_cache_seconds=0))
    async with app.test_app():
        api = Api(app.test_client())
        for _ in range(3):
            assert (await _me(api, rsa_key.token()))[0] == 200
    assert jwks_server.hits == 3


async def test_jwks_down_is_503(
    build_app: AppFactory, settings: Settings, rsa_key: SigningKey
) -> None:
    url = f"http://127.0.0.1:{free_port()}/jwks.json"
    app = build_app(settings=_jwks_settings(settings, url))
    async with app.test_app():
        status, payload = await _me(Api(app.test_client()), rsa_key.token())
    assert (status, payload["error"]["code"]) == (503, "E_AUTH_UNAVAILABLE")


async def test_jwks_recovery_is_picked_up_after_the_retry_interval(
    build_app: AppFactory, settings: Settings, rsa_key: SigningKey
) -> None:
    port = free_port()
    app = build_app(settings=_jwks_settings(settings, f"http://127.0.0.1:{port}/jwks.json"))
    async with app.test_app():
        api = Api(app.test_client())
        assert (await _me(api, rsa_key.token()))[0] == 503
        with JwksServer(port) as server:
            server.keys = [rsa_key.jwk]
            # Failures are throttled: no fetch until the retry interval has passed.
            assert (await _me(api, rsa_key.token()))[0] == 503
            assert server.hits == 0
            nexus_state(app).verifier.jwks.min_refresh_interval = 0  # type: ignore[union-attr]
            assert (await _me(api, rsa_key.token()))[0] == 200
            assert server.hits == 1


async def test_jwks_outage_after_first_fetch_keeps_serving_cached_keys(
    build_app: AppFactory, settings: Settings, rsa_key: SigningKey
) -> None:
    with JwksServer() as server:
        server.keys = [rsa_key.jwk]
        app = build_app(settings=_jwks_settings(settings, server.url, jwks_cache_seconds=0))
        async with app.test_app():
            api = Api(app.test_client())
            assert (await _me(api, rsa_key.token()))[0] == 200
            server.stop()
            # Known kid: stale keys still verify. Unknown kid: we cannot know -> 503.
            assert (await _me(api, rsa_key.token()))[0] == 200
            status, payload = await _me(api, SigningKey("new").token())
            assert (status, payload["error"]["code"]) == (503, "E_AUTH_UNAVAILABLE")


async def test_jwks_garbage_document_is_503(
    build_app: AppFactory, settings: Settings, jwks_server: JwksServer, rsa_key: SigningKey
) -> None:
    jwks_server.keys = "nope"  # type: ignore[assignment]
    app = build_app(settings=_jwks_settings(settings, jwks_server.url))
    async with app.test_app():
        status, payload = await _me(Api(app.test_client()), rsa_key.token())
    assert (status, payload["error"]["code"]) == (503, "E_AUTH_UNAVAILABLE")


async def test_cached_keys_stop_verifying_once_too_stale(
    build_app: AppFactory, settings: Settings, rsa_key: SigningKey
) -> None:
    """NEXUS_JWKS_MAX_STALE_SECONDS bounds how long an outage keeps old keys alive."""
    with JwksServer() as server:
        server.keys = [rsa_key.jwk]
        app = build_app(
            settings=_jwks_settings(
                settings, server.url, jwks_cache_seconds=0, jwks_max_stale_seconds=1
            )
        )
        async with app.test_app():
            api = Api(app.test_client())
            assert (await _me(api, rsa_key.token()))[0] == 200
            server.stop()

            async def refused() -> tuple[int, Any] | None:
                status, payload = await _me(api, rsa_key.token())
                return (status, payload) if status != 200 else None

            status, payload = await poll(refused, deadline_s=10, what="stale keys refused")
            assert (status, payload["error"]["code"]) == (503, "E_AUTH_UNAVAILABLE")
            # And it stays refused: a stale key never comes back without a fetch.
            assert (await _me(api, rsa_key.token()))[0] == 503
