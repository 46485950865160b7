"""Malformed credentials are 4xx, never 500 (issue 11 §4; SPEC §2 "Decided since").

Property tests against the real app on a real database: valid credentials of every kind
(pre-signed upload and download tokens, user JWTs, operator keys, list cursors,
Idempotency-Keys) are mutated (characters replaced, inserted, deleted, truncated,
repeated; Unicode digits and separators favoured) or replaced by arbitrary text, and every
answer must be below 500 and, when an error, the one envelope.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from quart import Quart
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.uploads import signing
from tests.support.library_api import new_user
from tests.support.operators import operator_key
from tests.support.webapp import Api, AppFactory

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Characters that parsers trip on: Unicode digits (str.isdigit() but not always int()),
# separators of the formats involved, padding, whitespace, NUL.
TRICKY = st.sampled_from([*'²³¹٣۵߂.=-_+/ \t\x00{}[]":,%~', "Ⅻ", "\U0001d7d9", "\uff11", "ß"])
ANY_TEXT = st.one_of(TRICKY, st.characters(codec="utf-8", exclude_categories=("Cs",)))
# Header values travel as Latin-1 (what an HTTP server hands the app); no line breaks.
HEADER_TEXT = st.one_of(TRICKY, st.characters(codec="latin-1", exclude_characters="\r\n")).filter(
    lambda c: c.encode("latin-1", "ignore") == c.encode("utf-8", "ignore") or ord(c) < 256
)

EDITS = ("replace", "insert", "delete", "truncate", "repeat")


def _apply(base: str, edits: list[tuple[str, int, str]]) -> str:
    text = base
    for kind, position, piece in edits:
        at = position % (len(text) + 1)
        if kind == "replace":
            text = text[:at] + piece + text[at + len(piece) :]
        elif kind == "insert":
            text = text[:at] + piece + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + 1 + len(piece) :]
        elif kind == "truncate":
            text = text[:at]
        else:
            text = text + text[at:]
    return text


def mutations(base: str, alphabet: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    edit = st.tuples(
        st.sampled_from(EDITS),
        st.integers(0, max(len(base), 1) * 2),
        st.text(alphabet, min_size=0, max_size=4),
    )
    return st.one_of(
        st.lists(edit, min_size=1, max_size=4).map(lambda edits: _apply(base, edits)),
        st.text(alphabet, max_size=120),
    )


def _b64(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10) | st.just("HS256"),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
# Well-formed JWT syntax with hostile contents: every header/claim of any JSON type.
FORGED_JWT = st.builds(
    lambda header, claims, sig: f"{_b64(header)}.{_b64(claims)}.{_b64(sig)}",
    st.one_of(
        JSON_VALUE,
        st.fixed_dictionaries(
            {"alg": JSON_VALUE}, optional={"kid": JSON_VALUE, "crit": JSON_VALUE, "typ": JSON_VALUE}
        ),
    ),
    st.one_of(
        JSON_VALUE,
        st.fixed_dictionaries(
            {}, optional={k: JSON_VALUE for k in ("sub", "exp", "iss", "aud", "nbf", "iat")}
        ),
    ),
    st.binary(max_size=40),
)


@dataclass
class Credentials:
    api: Api
    jwt: str
    media_id: uuid.UUID
    upload_token: str
    download_token: str
    operator_key: str
    cursor: str


@pytest.fixture
async def fuzz_app(
    build_app: AppFactory, settings: Settings, tmp_path: Path
) -> AsyncIterator[Quart]:
    app = build_app(settings=settings.model_copy(update={"storage_dir": tmp_path / "storage"}))
    async with app.test_app():
        yield app


@pytest.fixture
async def creds(
    fuzz_app: Quart, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> Credentials:
    api = Api(fuzz_app.test_client())
    user = await new_user(api)
    init = await user.init_pdf_upload(9)
    media_id = uuid.UUID(init.data["media_id"])
    download = signing.sign(
        settings.upload_signing_key_bytes, "download", media_id, ttl_seconds=900
    )
    key = await operator_key(sessionmaker, "viewer")
    for name in ("a", "b"):
        await user.create_library(name)
    page = await user.get("/libraries", query_string={"limit": "1"})
    assert page.status == 200 and page.json["page"]["next_cursor"], page.json
    return Credentials(
        api=api,
        jwt=user.token,
        media_id=media_id,
        upload_token=init.data["upload_token"],
        download_token=download.token,
        operator_key=key.token,
        cursor=page.json["page"]["next_cursor"],
    )


async def _assert_client_error(response: Any, what: str) -> None:
    assert response.status_code < 500, f"{what}: {response.status_code}"
    if response.status_code >= 400:
        error = (await response.get_json())["error"]
        assert error["code"].startswith("E_") and error["request_id"], what


def _expiry_swapped(token: str, expiry: str) -> str:
    parts = token.split(".")
    return ".".join([*parts[:2], expiry, *parts[3:]])


@FUZZ
@given(data=st.data())
@example(data=None)  # the reported case: a Unicode digit as the expiry
async def test_pre_signed_tokens(creds: Credentials, data: st.DataObject | None) -> None:
    for action, base in (("upload", creds.upload_token), ("download", creds.download_token)):
        if data is None:
            token = _expiry_swapped(base, "²")
        else:
            token = data.draw(mutations(base, ANY_TEXT), label=action)
        method = "PUT" if action == "upload" else "GET"
        r = await creds.api.request(
            method,
            f"/media/{creds.media_id}/{action}",
            internal=None,
            query_string={"token": token},
            data=b"%PDF-1.4\n" if method == "PUT" else None,
        )
        await _assert_client_error(r, f"{action} token {token!r}")
        if data is None:
            assert r.status_code == 403


@FUZZ
@given(token=st.one_of(FORGED_JWT, st.text(HEADER_TEXT, max_size=200)))
@example(token=f"{_b64({'alg': ['RS256']})}.{_b64({'sub': 'x'})}.c2ln")
@example(token=f"{_b64({'alg': 'HS256'})}.{_b64(['not', 'an', 'object'])}.c2ln")
async def test_forged_jwts(creds: Credentials, token: str) -> None:
    r = await creds.api.get("/me", token=token)
    await _assert_client_error(r, f"jwt {token!r}")
    assert r.status_code in (400, 401)


@FUZZ
@given(data=st.data())
async def test_mutated_jwts_and_authorization_headers(
    creds: Credentials, data: st.DataObject
) -> None:
    header = data.draw(mutations(f"Bearer {creds.jwt}", HEADER_TEXT))
    r = await creds.api.get("/me", headers={"Authorization": header})
    await _assert_client_error(r, f"authorization {header!r}")


@FUZZ
@given(data=st.data())
async def test_mutated_operator_keys(creds: Credentials, data: st.DataObject) -> None:
    key = data.draw(mutations(creds.operator_key, HEADER_TEXT))
    r = await creds.api.get("/internal/ingest-jobs", headers={"Authorization": f"Bearer {key}"})
    await _assert_client_error(r, f"operator key {key!r}")


@FUZZ
@given(data=st.data())
async def test_mutated_cursors(creds: Credentials, data: st.DataObject) -> None:
    cursor = data.draw(mutations(creds.cursor, ANY_TEXT))
    r = await creds.api.get(
        "/libraries", token=creds.jwt, query_string={"limit": "1", "cursor": cursor}
    )
    await _assert_client_error(r, f"cursor {cursor!r}")


@FUZZ
@given(key=st.one_of(st.text(HEADER_TEXT, max_size=300), st.sampled_from(["", " ", "²" * 300])))
@example(key="a\x00b")  # found by this test: NUL reached Postgres (500)
async def test_idempotency_keys(creds: Credentials, key: str) -> None:
    r = await creds.api.post(
        "/libraries",
        token=creds.jwt,
        headers={"Idempotency-Key": key},
        json={"name": "fuzzed"},
    )
    await _assert_client_error(r, f"idempotency key {key!r}")
