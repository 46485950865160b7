"""`Idempotency-Key` for creating POST routes (SPEC §2): a unit of work that replays.

    @bp.post("/things")
    @raises(...)
    @idempotent
    @validate_request(ThingIn)
    @validate_response(Data[ThingOut], 201)
    @user_required
    async def create_thing(data: ThingIn) -> Reply:
        async with idempotent_unit_of_work() as work:
            if work.replay is not None:
                return work.replay
            thing = await service.create(work.session, ...)
            return await work.respond(Data(data=ThingOut(...)), 201)

Without the header this is a plain `unit_of_work()`. With it, the key is claimed in the
same transaction as the work (see `nexus.idempotency.service`), keyed by (user, route
template, key); the request hash covers the method, route, path parameters and the JSON
body (canonicalised, so key order and whitespace do not matter). A repeat of the same
request answers the stored status and body with `Idempotent-Replayed: true`; a different
request under the same key is 409 E_IDEMPOTENCY_KEY_REUSED.
"""

from __future__ import annotations

import hashlib
import json
import re
from types import TracebackType
from typing import Any

from pydantic import BaseModel
from quart import current_app, request
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.idempotency import service
from web.auth import current_user
from web.openapi import IDEMPOTENT_ATTR
from web.uow import UnitOfWork, unit_of_work

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"

Reply = tuple[Any, int] | tuple[Any, int, dict[str, str]]

_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def route_template() -> str:
    """`POST /libraries/{library_id}/invites` for the current request."""
    rule = request.url_rule.rule if request.url_rule is not None else request.path
    path = _PARAM.sub(r"{\1}", rule)
    return f"{request.method} {path}"


async def request_hash(validated: BaseModel | None = None) -> str:
    # The validated body (defaults filled in) when the view has one, so that sending a
    # default explicitly or leaving it out is the same request.
    body = (
        validated.model_dump(mode="json")
        if validated is not None
        else await request.get_json(silent=True)
    )
    material = {
        "method": request.method,
        "route": route_template(),
        "path": {k: str(v) for k, v in sorted((request.view_args or {}).items())},
        "body": body,
    }
    raw = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


class IdempotentWork:
    """A unit of work plus, when the request carries a key, its claim or its replay."""

    def __init__(self, validated: BaseModel | None = None) -> None:
        self._validated = validated
        self._uow: UnitOfWork = unit_of_work()
        self._key: str | None = None
        self._route = ""
        self._hash = ""
        self._completed = False
        self.replay: Reply | None = None

    @property
    def session(self) -> AsyncSession:
        return self._uow.session

    @property
    def uow(self) -> UnitOfWork:
        return self._uow

    async def __aenter__(self) -> IdempotentWork:
        view = current_app.view_functions.get(request.endpoint or "")
        if not getattr(view, IDEMPOTENT_ATTR, False):
            # The OpenAPI document must show the header and its 409 (web/openapi.py).
            raise RuntimeError("a view using idempotent_unit_of_work must be @idempotent")
        raw = request.headers.get(IDEMPOTENCY_HEADER)
        if raw is not None:
            self._key = service.check_key(raw)
            self._route = route_template()
            self._hash = await request_hash(self._validated)
        await self._uow.__aenter__()
        if self._key is None:
            return self
        try:
            stored = await service.claim(
                self.session, current_user().user_id, self._route, self._key, self._hash
            )
            if stored is not None:
                stored = service.replay_or_conflict(stored, self._hash)
                self.replay = (stored.response, stored.status_code, {REPLAYED_HEADER: "true"})
        except BaseException as exc:
            await self._uow.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def respond(self, value: BaseModel, status: int) -> Reply:
        """The view's answer; stored under the key (if any) before the commit."""
        if self._key is not None:
            await service.complete(
                self.session,
                current_user().user_id,
                self._route,
                self._key,
                status,
                value.model_dump(mode="json"),
            )
            self._completed = True
        return value, status

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if exc is None and self._key is not None and self.replay is None and not self._completed:
            exc = RuntimeError("idempotent view returned without respond()")
            exc_type, tb = RuntimeError, None
            await self._uow.__aexit__(exc_type, exc, tb)
            raise exc
        return await self._uow.__aexit__(exc_type, exc, tb)


def idempotent_unit_of_work(validated: BaseModel | None = None) -> IdempotentWork:
    """`validated`: the view's parsed body, hashed instead of the raw JSON."""
    return IdempotentWork(validated)
