"""User JWT verification (SPEC §1): HS256 secret (local/test) or a cached JWKS (RS256/ES256).

`TokenVerifier.verify` returns the user id (the `sub` UUID) or raises `Unauthenticated`;
when the JWKS cannot be fetched and no usable cached key exists it raises
`E_AUTH_UNAVAILABLE`. Keys are cached for `jwks_cache_seconds`; while the provider is
unreachable they keep verifying for at most `jwks_max_stale_seconds` after their last
successful fetch, then requests get `E_AUTH_UNAVAILABLE` (a revoked key cannot live on
forever behind an outage). A token with an unknown
`kid` triggers one refresh, and such forced refreshes are rate-limited so garbage tokens
cannot turn the API into a JWKS load generator.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import OrderedDict
from typing import Any, NamedTuple

import httpx
import jwt
import structlog

from nexus.config import Env, Settings
from nexus.errors import NexusError, Unauthenticated

log = structlog.get_logger("nexus.web.auth")

LEEWAY_SECONDS = 60
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "ES256"})
# Verified tokens remembered per process (a BFF sends the same token on every request of a
# session): a bounded LRU keyed by the token itself.
VERIFIED_CACHE_SIZE = 10_000


class _Verified(NamedTuple):
    user_id: uuid.UUID
    # Wall-clock second after which PyJWT would refuse the token (exp + leeway).
    valid_until: float
    # The signing key's id for a JWKS token: a hit still needs that key in the key set.
    kid: str | None


class AuthUnavailableError(NexusError):
    def __init__(self, message: str = "the identity provider is unavailable") -> None:
        super().__init__("E_AUTH_UNAVAILABLE", message)


class JwksCache:
    """Signing keys by `kid`, fetched with httpx and kept for `ttl` seconds."""

    def __init__(
        self,
        url: str,
        *,
        ttl_seconds: float,
        max_stale_seconds: float = 86400.0,
        min_refresh_interval: float = 10.0,
        timeout_seconds: float = 5.0,
    ) -> None:
        self.url = url
        self.ttl = ttl_seconds
        self.max_stale = max_stale_seconds
        self.min_refresh_interval = min_refresh_interval
        self.timeout = timeout_seconds
        self.fetch_count = 0
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._forced_at: float | None = None
        self._failed_at: float | None = None
        self._lock = asyncio.Lock()
        self._client: httpx.AsyncClient | None = None

    async def get(self, kid: str) -> jwt.PyJWK | None:
        """The key for `kid`; refreshes when stale, and once when `kid` is unknown."""
        if self._stale():
            await self._refresh(force=False)
        key = self._keys.get(kid)
        if key is None and self._may_force():
            await self._refresh(force=True)
            key = self._keys.get(kid)
        return key

    def _age(self) -> float:
        return math.inf if self._fetched_at is None else time.monotonic() - self._fetched_at

    def _stale(self) -> bool:
        return self._age() >= min(self.ttl, self.max_stale)

    def _expired(self) -> bool:
        """Too old to verify anything, even while the provider is unreachable."""
        return self._age() >= self.max_stale

    def _may_force(self) -> bool:
        return (
            self._forced_at is None
            or time.monotonic() - self._forced_at >= self.min_refresh_interval
        )

    def _failed_recently(self) -> bool:
        return (
            self._failed_at is not None
            and time.monotonic() - self._failed_at < self.min_refresh_interval
        )

    async def _refresh(self, *, force: bool) -> None:
        """Fetch the key set. Raises `AuthUnavailableError` when it cannot be fetched and
        the answer matters: no keys at all, or a forced refresh for an unknown kid. After a
        failure, further fetches wait `min_refresh_interval` (no timeout per request)."""
        started = time.monotonic()
        async with self._lock:
            # Another task refreshed while we waited: use its result.
            if self._fetched_at is not None and self._fetched_at >= started:
                return
            if force:
                if not self._may_force():
                    return
                self._forced_at = time.monotonic()
            if self._failed_recently():
                failure: BaseException | None = None
            else:
                try:
                    self._keys = await self._fetch()
                    self._fetched_at = time.monotonic()
                    self._failed_at = None
                    return
                except (httpx.HTTPError, ValueError) as exc:
                    log.warning("jwks fetch failed", url=self.url, error=type(exc).__name__)
                    self._failed_at = time.monotonic()
                    failure = exc
            if not self._keys or force or self._expired():
                # No (usable) keys, or we cannot tell whether the kid exists: unavailable,
                # not 401.
                raise AuthUnavailableError() from failure
            # Otherwise keep serving the stale keys, up to `max_stale`.

    async def _fetch(self) -> dict[str, jwt.PyJWK]:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        self.fetch_count += 1
        response = await self._client.get(self.url, headers={"Accept": "application/json"})
        response.raise_for_status()
        document = response.json()
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("JWKS document has no 'keys' list")
        keys: dict[str, jwt.PyJWK] = {}
        for raw in document["keys"]:
            key = _parse_jwk(raw)
            if key is not None:
                keys[str(raw["kid"])] = key
        return keys

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _parse_jwk(raw: Any) -> jwt.PyJWK | None:
    if not isinstance(raw, dict) or not raw.get("kid") or raw.get("use", "sig") != "sig":
        return None
    if raw.get("kty") not in ("RSA", "EC"):
        return None
    try:
        return jwt.PyJWK(raw)
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
        log.warning("ignoring unusable JWK", kid=str(raw.get("kid")))
        return None


class TokenVerifier:
    """Verifies user JWTs per the settings; see the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self.issuer = settings.jwt_issuer
        self.audiences = list(settings.jwt_audiences)
        self.hs256_key: str | None = None
        if settings.jwt_hs256_secret is not None and settings.env in (Env.LOCAL, Env.TEST):
            self.hs256_key = settings.jwt_hs256_secret.get_secret_value()
        self.jwks: JwksCache | None = (
            JwksCache(
                settings.jwks_url,
                ttl_seconds=settings.jwks_cache_seconds,
                max_stale_seconds=settings.jwks_max_stale_seconds,
            )
            if settings.jwks_url
            else None
        )
        self._verified: OrderedDict[str, _Verified] = OrderedDict()

    async def verify(self, token: str) -> uuid.UUID:
        """The token's user id. A token already verified by this process is answered from
        the cache until it expires (with the leeway PyJWT allows); a JWKS token only while
        its signing key is still in the (fresh or usable stale) key set."""
        hit = self._verified.get(token)
        if hit is not None:
            if time.time() < hit.valid_until and (
                hit.kid is None or (self.jwks is not None and await self.jwks.get(hit.kid))
            ):
                self._verified.move_to_end(token)
                return hit.user_id
            self._verified.pop(token, None)
        user_id, valid_until, kid = await self._verify(token)
        self._verified[token] = _Verified(user_id, valid_until, kid)
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return user_id

    async def _verify(self, token: str) -> tuple[uuid.UUID, float, str | None]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str):  # any JSON value can arrive here (a list: unhashable)
            raise Unauthenticated("token algorithm not accepted")
        key: Any
        kid: str | None = None
        if alg == "HS256" and self.hs256_key is not None:
            key = self.hs256_key
        elif alg in ASYMMETRIC_ALGORITHMS and self.jwks is not None:
            key = await self._jwks_key(header, str(alg))
            kid = str(header["kid"])
        else:
            raise Unauthenticated("token algorithm not accepted")
        user_id, exp = self._decode(token, key, str(alg))
        return user_id, exp + LEEWAY_SECONDS, kid

    async def _jwks_key(self, header: dict[str, Any], alg: str) -> Any:
        assert self.jwks is not None
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("token has no key id")
        jwk = await self.jwks.get(kid)
        if jwk is None:
            raise Unauthenticated("unknown signing key")
        # PyJWK takes the JWK's `alg`, or infers it from kty/crv (RSA -> RS256, P-256 ->
        # ES256): a token may only use the algorithm its key is for.
        if jwk.algorithm_name != alg:
            raise Unauthenticated("token algorithm does not match its key")
        return jwk.key

    def _decode(self, token: str, key: Any, alg: str) -> tuple[uuid.UUID, float]:
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=self.issuer,
                audience=self.audiences or None,
                leeway=LEEWAY_SECONDS,
                options={
                    "require": ["exp", "iss", "sub"],
                    "verify_aud": bool(self.audiences),
                },
            )
        except (jwt.PyJWTError, ValueError, TypeError):
            raise Unauthenticated("invalid token") from None
        try:
            return uuid.UUID(str(claims["sub"])), float(claims["exp"])
        except ValueError:
            raise Unauthenticated("token subject is not a user id") from None

    async def aclose(self) -> None:
        if self.jwks is not None:
            await self.jwks.aclose()
