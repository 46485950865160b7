"""`GET /me`: who the caller is (the bootstrap makes sure the answer exists)."""

from __future__ import annotations

import uuid

import orjson
from pydantic import BaseModel
from quart import Blueprint, Response
from quart_schema import document_response

from web.auth import current_user, user_required
from web.envelope import Data
from web.openapi import links, raises

bp = Blueprint("me", __name__)

_DEFAULT_LIBRARY = {"library_id": "$response.body#/data/default_library_id"}


class MeOut(BaseModel):
    user_id: uuid.UUID
    default_library_id: uuid.UUID


@bp.get("/me")
@raises()
@links(
    200,
    get_library=_DEFAULT_LIBRARY,
    list_library_media=_DEFAULT_LIBRARY,
    add_library_media=_DEFAULT_LIBRARY,
    list_members=_DEFAULT_LIBRARY,
)
@document_response(Data[MeOut])
@user_required
async def me() -> Response:
    user = current_user()
    # Our own ids (`MeOut`), not re-validated, in the bytes the app's JSON provider gave
    # for the validated model (compact, sorted keys, a final newline), by orjson.
    body = {
        "data": {"user_id": str(user.user_id), "default_library_id": str(user.default_library_id)}
    }
    return Response(
        orjson.dumps(body, option=orjson.OPT_SORT_KEYS) + b"\n", content_type="application/json"
    )
