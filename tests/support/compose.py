"""Reading compose/ the way `docker compose` does, for tests (no Docker engine runs here):
the example env file, `${VAR}`, `${VAR:-default}` and `${VAR:?message}` interpolation."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import yaml

from nexus.secret_rules import is_placeholder

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
_VAR = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:\?|:-)(?P<arg>[^}]*))?\}")


def example() -> dict[str, str]:
    values = {}
    for line in (COMPOSE / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def filled() -> dict[str, str]:
    """The example with every placeholder replaced, as an operator would."""
    filled = {}
    for name, value in example().items():
        if is_placeholder(value):
            if name.endswith("_URL"):
                value = "https://auth.acme-corp.net/.well-known/jwks.json"
            elif name == "NEXUS_JWT_ISSUER":
                value = "https://auth.acme-corp.net/"
            elif name == "NEXUS_IMAGE_TAG":
                value = "2026.12.1"
            else:
                value = secrets.token_urlsafe(32)
        filled[name] = value
    return filled


def interpolate(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op == ":-":
            return arg
        raise KeyError(f"{name} is required: {arg}")

    return _VAR.sub(one, value)


def compose(env: dict[str, str]) -> dict[str, Any]:
    return interpolate(yaml.safe_load((COMPOSE / "docker-compose.yml").read_text()), env)
