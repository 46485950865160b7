"""Helpers for the library/invite/media web tests: users with tokens, media rows by SQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.webapp import Api, make_token


@dataclass
class Reply:
    status: int
    json: Any
    headers: Any

    @property
    def data(self) -> Any:
        return self.json["data"]

    @property
    def code(self) -> str | None:
        return (self.json or {}).get("error", {}).get("code") if self.json else None

    @property
    def outcome(self) -> tuple[int, str | None]:
        """(status, error code): what a specification of a refusal states."""
        return self.status, self.code


@dataclass
class User:
    """A bootstrapped user (GET /me ran) who calls the API with their own token."""

    api: Api
    id: uuid.UUID
    token: str
    default_library_id: uuid.UUID

    async def call(self, method: str, path: str, **kwargs: Any) -> Reply:
        response = await self.api.request(method, path, token=self.token, **kwargs)
        body = await response.get_json() if response.status_code != 204 else None
        return Reply(response.status_code, body, response.headers)

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("POST", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("DELETE", path, **kwargs)

    async def create_library(self, name: str = "Shared") -> uuid.UUID:
        r = await self.post("/libraries", json={"name": name})
        assert r.status == 201, r.json
        return uuid.UUID(r.data["id"])

    async def invite(self, library_id: uuid.UUID, who: User, role: str = "member") -> uuid.UUID:
        r = await self.post(
            f"/libraries/{library_id}/invites", json={"invitee_user_id": str(who.id), "role": role}
        )
        assert r.status == 201, r.json
        return uuid.UUID(r.data["id"])

    async def init_pdf_upload(self, size_bytes: int) -> Reply:
        """A PDF upload of `size_bytes` initiated (201): its ticket."""
        r = await self.post(
            "/media/upload/init",
            json={
                "kind": "pdf",
                "filename": "a.pdf",
                "content_type": "application/pdf",
                "size_bytes": size_bytes,
            },
        )
        assert r.status == 201, r.json
        return r

    async def join(self, owner: User, library_id: uuid.UUID, role: str = "member") -> None:
        """`owner` invites this user, who accepts."""
        invite_id = await owner.invite(library_id, self, role)
        r = await self.post(f"/libraries/invites/{invite_id}/accept")
        assert r.status == 200, r.json


async def new_user(api: Api) -> User:
    uid = uuid.uuid4()
    token = make_token(uid)
    response = await api.get("/me", token=token)
    assert response.status_code == 200
    me = (await response.get_json())["data"]
    return User(api, uid, token, uuid.UUID(me["default_library_id"]))


async def insert_media(
    sm: async_sessionmaker[AsyncSession],
    *,
    kind: str = "web_article",
    status: str = "pending",
    title: str = "a title",
    file: bool = False,
    fragments: list[str] | None = None,
    playback_url: str | None = None,
    intrinsic_for: uuid.UUID | None = None,
) -> uuid.UUID:
    """A media row (ingestion is a later issue), optionally with a file, fragments, and an
    intrinsic link into a default library."""
    async with sm() as s, s.begin():
        media_id = await s.scalar(
            text(
                "INSERT INTO media (kind, title, processing_status, external_playback_url, "
                "canonical_source_url) VALUES (:k, :t, CAST(:s AS processing_status), :p, "
                "'https://example.com/a') RETURNING id"
            ),
            {"k": kind, "t": title, "s": status, "p": playback_url},
        )
        if file:
            await s.execute(
                text(
                    "INSERT INTO media_file (media_id, storage_path, content_type, size_bytes) "
                    "VALUES (:m, 'x/y', 'application/pdf', 10)"
                ),
                {"m": media_id},
            )
        for idx, body in enumerate(fragments or []):
            await s.execute(
                text(
                    "INSERT INTO fragments (media_id, idx, canonical_text, html_sanitized) "
                    "VALUES (:m, :i, :t, :h)"
                ),
                {"m": media_id, "i": idx, "t": body, "h": f"<p>{body}</p>"},
            )
        if intrinsic_for is not None:
            await s.execute(
                text(
                    "INSERT INTO default_library_intrinsics (default_library_id, media_id) "
                    "VALUES (:d, :m)"
                ),
                {"d": intrinsic_for, "m": media_id},
            )
            await s.execute(
                text("INSERT INTO library_media (library_id, media_id) VALUES (:d, :m)"),
                {"d": intrinsic_for, "m": media_id},
            )
    assert isinstance(media_id, uuid.UUID)
    return media_id


async def scalar(sm: async_sessionmaker[AsyncSession], sql: str, **params: Any) -> Any:
    async with sm() as s:
        return await s.scalar(text(sql), params)


async def execute(sm: async_sessionmaker[AsyncSession], sql: str, **params: Any) -> None:
    async with sm() as s, s.begin():
        await s.execute(text(sql), params)


async def walk(user: User, path: str, limit: int) -> list[Any]:
    """Every item of a list route, page by page; checks the page block on the way."""
    items: list[Any] = []
    cursor: str | None = None
    sep = "&" if "?" in path else "?"
    for _ in range(1000):
        q = f"{path}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        r = await user.get(q)
        assert r.status == 200, r.json
        assert len(r.json["data"]) <= limit
        items.extend(r.json["data"])
        page = r.json["page"]
        assert page["has_more"] == (page["next_cursor"] is not None)
        if not page["has_more"]:
            return items
        cursor = page["next_cursor"]
    raise AssertionError("pagination did not end")
