"""`nexus dev-token [--sub UUID]`: an HS256 user JWT for trying the API locally.

The key is NEXUS_JWT_HS256_SECRET or, in the `local` environment, the secret `nexus dev`
generated into `./var/dev-jwt-secret`.
"""

from __future__ import annotations

import argparse
import os
import secrets
import time
import uuid
from pathlib import Path

import jwt

from cli.common import EXIT_FAILURE, EXIT_OK, SubParsers, err, out
from nexus.config import Env, Settings

DEV_SECRET_FILE = Path("var") / "dev-jwt-secret"
TOKEN_LIFETIME_SECONDS = 3600


def register(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser(
        "dev-token", help="print an HS256 user JWT (local/test only), valid for one hour"
    )
    parser.add_argument(
        "--sub", type=uuid.UUID, default=None, help="user id (default: a new random UUID)"
    )
    parser.set_defaults(handler=run)


def load_or_create_dev_secret(path: Path = DEV_SECRET_FILE) -> str:
    """The local dev secret, created (mode 0600) on first use and reused afterwards."""
    if path.exists():
        existing = path.read_text().strip()
        if existing:
            return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def signing_secret(settings: Settings) -> str | None:
    if settings.jwt_hs256_secret is not None:
        return settings.jwt_hs256_secret.get_secret_value()
    if settings.env == Env.LOCAL and DEV_SECRET_FILE.exists():
        return DEV_SECRET_FILE.read_text().strip() or None
    return None


def mint(settings: Settings, secret: str, sub: uuid.UUID, *, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    claims = {
        "sub": str(sub),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audiences[0] if settings.jwt_audiences else "authenticated",
        "iat": issued,
        "exp": issued + TOKEN_LIFETIME_SECONDS,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if settings.env not in (Env.LOCAL, Env.TEST):
        err("error: dev-token is for the local and test environments only")
        return EXIT_FAILURE
    secret = signing_secret(settings)
    if secret is None:
        err(
            "error: no HS256 secret: set NEXUS_JWT_HS256_SECRET "
            f"(or run `nexus dev` once, which writes {DEV_SECRET_FILE})"
        )
        return EXIT_FAILURE
    sub = args.sub or uuid.uuid4()
    err(f"sub: {sub} (valid for {TOKEN_LIFETIME_SECONDS // 60} minutes)")
    out(mint(settings, secret, sub))
    return EXIT_OK
