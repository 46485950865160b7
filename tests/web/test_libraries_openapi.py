"""The OpenAPI document shows every library, invite and media route with its schemas."""

from __future__ import annotations

from tests.support.webapp import Api

ROUTES = {
    "/libraries": {"get", "post"},
    "/libraries/{library_id}": {"get", "patch", "delete"},
    "/libraries/{library_id}/media": {"get", "post"},
    "/libraries/{library_id}/media/{media_id}": {"delete"},
    "/libraries/{library_id}/members": {"get"},
    "/libraries/{library_id}/members/{user_id}": {"patch", "delete"},
    "/libraries/{library_id}/transfer-ownership": {"post"},
    "/libraries/{library_id}/invites": {"get", "post"},
    "/libraries/invites": {"get"},
    "/libraries/invites/{invite_id}/accept": {"post"},
    "/libraries/invites/{invite_id}/decline": {"post"},
    "/libraries/invites/{invite_id}": {"delete"},
    "/media/{media_id}": {"get"},
    "/media/{media_id}/fragments": {"get"},
}


async def test_every_route_is_documented(api: Api) -> None:
    doc = await (await api.get("/openapi.json")).get_json()
    paths = doc["paths"]
    for path, methods in ROUTES.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    post = paths["/libraries"]["post"]
    assert "requestBody" in post
    assert "201" in post["responses"]
    assert {"200", "201"} <= set(paths["/libraries/{library_id}/media"]["post"]["responses"])
    params = {p["name"] for p in paths["/libraries"]["get"].get("parameters", [])}
    assert {"limit", "cursor"} <= params
    schemas = doc["components"]["schemas"]
    for name in ("LibraryOut", "MediaOut", "LibraryMemberOut", "LibraryInvitationOut"):
        assert name in schemas, sorted(schemas)
