"""Library routes: shapes, every error code, masking, check order (SPEC §4, §5)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.library_api import User, execute, insert_media, scalar
from tests.support.webapp import Api

LIBRARY_KEYS = {"id", "name", "owner_user_id", "is_default", "role", "created_at", "updated_at"}
MEMBER_KEYS = {"user_id", "role", "is_owner", "created_at"}
UNKNOWN_ID = "5f0c4f3e-6a0e-4d8e-9a55-0d2c1b7e9a10"
Sm = async_sessionmaker[AsyncSession]


async def _library_with_media(owner: User, sm: Sm, *members: User) -> tuple[uuid.UUID, uuid.UUID]:
    """A library of `owner` that `members` joined, holding one media of the owner's own."""
    lib = await owner.create_library()
    for member in members:
        await member.join(owner, lib)
    m = await insert_media(sm, intrinsic_for=owner.default_library_id)
    assert (await owner.post(f"/libraries/{lib}/media", json={"media_id": str(m)})).status == 201
    return lib, m


# ---------------------------------------------------------------------- libraries


async def test_list_has_the_default_library(alice: User) -> None:
    r = await alice.get("/libraries")
    assert r.status == 200
    assert r.json["page"] == {"next_cursor": None, "has_more": False}
    [lib] = r.json["data"]
    assert set(lib) == LIBRARY_KEYS
    assert lib["id"] == str(alice.default_library_id)
    assert (lib["name"], lib["is_default"], lib["role"]) == ("My Library", True, "admin")
    assert lib["owner_user_id"] == str(alice.id)


async def test_create_trims_the_name_and_makes_the_caller_owner(alice: User) -> None:
    r = await alice.post("/libraries", json={"name": "  Reading group  "})
    assert r.status == 201
    assert set(r.data) == LIBRARY_KEYS
    assert r.data["name"] == "Reading group"
    assert (r.data["is_default"], r.data["role"]) == (False, "admin")
    assert r.data["owner_user_id"] == str(alice.id)
    listed = await alice.get("/libraries")
    assert [lib["name"] for lib in listed.json["data"]] == ["My Library", "Reading group"]


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
async def test_create_rejects_bad_names(alice: User, name: str) -> None:
    assert (await alice.post("/libraries", json={"name": name})).outcome == (400, "E_NAME_INVALID")


async def test_create_accepts_100_characters(alice: User) -> None:
    r = await alice.post("/libraries", json={"name": "x" * 100 + "  "})
    assert r.status == 201


@pytest.mark.parametrize(
    "kwargs",
    [
        {"json": {}},
        {"json": {"name": 5}},
        {"json": {"name": "ok", "owner_user_id": str(uuid.uuid4())}},
        {"json": ["name"]},
        {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
    ],
)
async def test_create_rejects_bad_bodies(alice: User, kwargs: dict[str, object]) -> None:
    assert (await alice.post("/libraries", **kwargs)).outcome == (400, "E_INVALID_REQUEST")


async def test_routes_need_a_user(api: Api) -> None:
    r = await api.get("/libraries")
    assert r.status_code == 401
    r = await api.get("/libraries", token="x", internal=None)
    assert r.status_code == 403


async def test_get_library_and_masking(alice: User, bob: User) -> None:
    lib = await alice.create_library("Mine")
    r = await alice.get(f"/libraries/{lib}")
    assert (r.status, r.data["name"], r.data["role"]) == (200, "Mine", "admin")
    for path in (f"/libraries/{lib}", f"/libraries/{uuid.uuid4()}"):
        assert (await bob.get(path)).outcome == (404, "E_LIBRARY_NOT_FOUND")
    alices_default = f"/libraries/{alice.default_library_id}"
    assert (await bob.get(alices_default)).outcome == (404, "E_LIBRARY_NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/libraries/nope"),
        ("PATCH", "/libraries/nope"),
        ("DELETE", "/libraries/nope"),
        ("GET", "/libraries/nope/media"),
        # A well-formed id that names nothing; fixed, so every test process collects the
        # same test ids (pytest-xdist compares them).
        ("DELETE", f"/libraries/{UNKNOWN_ID}/media/nope"),
        ("GET", "/libraries/nope/members"),
        ("PATCH", f"/libraries/{UNKNOWN_ID}/members/nope"),
        ("DELETE", "/libraries/nope/members/nope"),
        ("POST", "/libraries/nope/transfer-ownership"),
        ("GET", "/libraries/nope/invites"),
        ("POST", "/libraries/invites/nope/accept"),
        ("POST", "/libraries/invites/nope/decline"),
        ("DELETE", "/libraries/invites/nope"),
        ("GET", "/media/nope"),
        ("GET", "/media/nope/fragments"),
    ],
)
async def test_non_uuid_ids_are_400(alice: User, method: str, path: str) -> None:
    assert (await alice.call(method, path, json={})).outcome == (400, "E_INVALID_REQUEST")


async def test_static_invites_route_wins_over_library_id(alice: User) -> None:
    r = await alice.get("/libraries/invites")
    assert r.status == 200
    assert r.json == {"data": [], "page": {"next_cursor": None, "has_more": False}}


async def test_rename(alice: User, bob: User) -> None:
    lib = await alice.create_library("Old")
    await bob.join(alice, lib)
    r = await alice.patch(f"/libraries/{lib}", json={"name": " New "})
    assert (r.status, r.data["name"]) == (200, "New")
    assert r.data["updated_at"] >= r.data["created_at"]
    path, default = f"/libraries/{lib}", f"/libraries/{alice.default_library_id}"
    assert (await alice.patch(path, json={"name": " "})).outcome == (400, "E_NAME_INVALID")
    assert (await bob.patch(path, json={"name": "Bob's"})).outcome == (403, "E_FORBIDDEN")
    r = await alice.patch(default, json={"name": "Other"})
    assert r.outcome == (403, "E_DEFAULT_LIBRARY_FORBIDDEN")
    assert (await alice.patch(path, json={})).outcome == (400, "E_INVALID_REQUEST")


async def test_rename_check_order_404_before_403_before_400(
    alice: User, bob: User, carol: User
) -> None:
    lib = await alice.create_library()
    await bob.join(alice, lib)
    r = await carol.patch(f"/libraries/{lib}", json={"name": ""})  # not a member
    assert r.code == "E_LIBRARY_NOT_FOUND"
    r = await bob.patch(f"/libraries/{lib}", json={"name": ""})  # member, not admin
    assert r.code == "E_FORBIDDEN"
    r = await alice.patch(f"/libraries/{alice.default_library_id}", json={"name": ""})
    assert r.code == "E_DEFAULT_LIBRARY_FORBIDDEN"


async def test_delete(alice: User, bob: User, carol: User) -> None:
    lib = await alice.create_library()
    await bob.join(alice, lib, role="admin")
    assert (await carol.delete(f"/libraries/{lib}")).outcome == (404, "E_LIBRARY_NOT_FOUND")
    assert (await bob.delete(f"/libraries/{lib}")).outcome == (403, "E_OWNER_REQUIRED")
    default = f"/libraries/{alice.default_library_id}"
    assert (await alice.delete(default)).outcome == (403, "E_DEFAULT_LIBRARY_FORBIDDEN")
    r = await alice.delete(f"/libraries/{lib}")
    assert (r.status, r.json) == (204, None)
    for user in (alice, bob):
        r = await user.get(f"/libraries/{lib}")
        assert r.code == "E_LIBRARY_NOT_FOUND"


async def test_delete_library_removes_its_media_from_members_defaults(
    alice: User, bob: User, sessionmaker: Sm
) -> None:
    lib, m = await _library_with_media(alice, sessionmaker, bob)
    r = await bob.get(f"/libraries/{bob.default_library_id}/media")
    assert [x["id"] for x in r.json["data"]] == [str(m)]
    assert (await alice.delete(f"/libraries/{lib}")).status == 204
    r = await bob.get(f"/libraries/{bob.default_library_id}/media")
    assert r.json["data"] == []
    assert (await bob.get(f"/media/{m}")).code == "E_MEDIA_NOT_FOUND"
    assert (await alice.get(f"/media/{m}")).status == 200  # alice's intrinsic stays


# -------------------------------------------------------------------------- media


async def test_add_media_201_then_200_and_list(alice: User, sessionmaker: Sm) -> None:
    m = await insert_media(sessionmaker, intrinsic_for=alice.default_library_id)
    lib = await alice.create_library()
    r = await alice.post(f"/libraries/{lib}/media", json={"media_id": str(m)})
    assert r.status == 201
    assert r.data["id"] == str(m)
    assert set(r.data["capabilities"]) == {
        "can_read",
        "can_highlight",
        "can_quote",
        "can_search",
        "can_play",
        "can_download_file",
    }
    r = await alice.post(f"/libraries/{lib}/media", json={"media_id": str(m)})
    assert r.status == 200
    r = await alice.get(f"/libraries/{lib}/media")
    assert r.status == 200
    assert [x["id"] for x in r.json["data"]] == [str(m)]


async def test_add_media_errors_in_order(
    alice: User, bob: User, carol: User, sessionmaker: Sm
) -> None:
    lib = await alice.create_library()
    await bob.join(alice, lib)
    invisible = await insert_media(sessionmaker, intrinsic_for=carol.default_library_id)
    path, body = f"/libraries/{lib}/media", {"media_id": str(invisible)}
    assert (await carol.post(path, json=body)).outcome == (404, "E_LIBRARY_NOT_FOUND")
    assert (await bob.post(path, json=body)).outcome == (403, "E_FORBIDDEN")
    for media_id in (invisible, uuid.uuid4()):
        r = await alice.post(path, json={"media_id": str(media_id)})
        assert r.outcome == (404, "E_MEDIA_NOT_FOUND")
    assert (await alice.post(path, json={"media_id": "x"})).outcome == (400, "E_INVALID_REQUEST")


async def test_add_to_default_library_is_an_intrinsic(
    alice: User, bob: User, sessionmaker: Sm
) -> None:
    lib, m = await _library_with_media(alice, sessionmaker, bob)
    # bob reads m through lib; adding it to his default library makes it his own
    r = await bob.post(f"/libraries/{bob.default_library_id}/media", json={"media_id": str(m)})
    assert r.status == 200  # the edge had already put it in his default library
    assert (await bob.delete(f"/libraries/{lib}/members/{bob.id}")).status == 204
    r = await bob.get(f"/libraries/{bob.default_library_id}/media")
    assert [x["id"] for x in r.json["data"]] == [str(m)]
    assert (await bob.get(f"/media/{m}")).status == 200


async def test_remove_media(alice: User, bob: User, carol: User, sessionmaker: Sm) -> None:
    lib, m = await _library_with_media(alice, sessionmaker, bob)
    path = f"/libraries/{lib}/media/{m}"
    assert (await carol.delete(path)).outcome == (404, "E_LIBRARY_NOT_FOUND")
    assert (await bob.delete(path)).outcome == (403, "E_FORBIDDEN")
    r = await alice.delete(path)
    assert (r.status, r.json) == (204, None)
    assert (await alice.delete(path)).outcome == (404, "E_MEDIA_NOT_FOUND")
    assert (await alice.get(f"/libraries/{lib}/media")).json["data"] == []
    assert (await bob.get(f"/media/{m}")).code == "E_MEDIA_NOT_FOUND"
    assert (await bob.get(f"/libraries/{bob.default_library_id}/media")).json["data"] == []


async def test_remove_from_default_keeps_a_row_justified_by_a_shared_library(
    alice: User, sessionmaker: Sm
) -> None:
    lib, m = await _library_with_media(alice, sessionmaker)
    d = alice.default_library_id
    assert (await alice.delete(f"/libraries/{d}/media/{m}")).status == 204
    r = await alice.get(f"/libraries/{d}/media")
    assert [x["id"] for x in r.json["data"]] == [str(m)]  # the edge from lib keeps it
    assert (await alice.delete(f"/libraries/{lib}/media/{m}")).status == 204
    assert (await alice.get(f"/libraries/{d}/media")).json["data"] == []
    assert (await alice.delete(f"/libraries/{d}/media/{m}")).outcome == (404, "E_MEDIA_NOT_FOUND")


async def test_default_library_lists_only_readable_media(alice: User, sessionmaker: Sm) -> None:
    d = alice.default_library_id
    readable = await insert_media(sessionmaker, title="mine", intrinsic_for=d)
    bare = await insert_media(sessionmaker, title="bare")
    await execute(
        sessionmaker,
        "INSERT INTO library_media (library_id, media_id) VALUES (:d, :m)",
        d=d,
        m=bare,
    )
    r = await alice.get(f"/libraries/{d}/media")
    assert [x["id"] for x in r.json["data"]] == [str(readable)]
    assert (await alice.get(f"/media/{bare}")).code == "E_MEDIA_NOT_FOUND"


async def test_default_library_stale_edge_is_not_listed(
    alice: User, bob: User, sessionmaker: Sm
) -> None:
    """An edge whose membership is gone grants nothing, even if the row is still there."""
    lib, m = await _library_with_media(alice, sessionmaker)
    d = bob.default_library_id
    await execute(
        sessionmaker,
        "INSERT INTO library_media (library_id, media_id) VALUES (:d, :m);",
        d=d,
        m=m,
    )
    await execute(
        sessionmaker,
        "INSERT INTO default_library_closure_edges (default_library_id, media_id, "
        "source_library_id) VALUES (:d, :m, :s)",
        d=d,
        m=m,
        s=lib,
    )
    assert (await bob.get(f"/libraries/{d}/media")).json["data"] == []


async def test_list_media_masking(alice: User, bob: User) -> None:
    lib = await alice.create_library()
    for path in (f"/libraries/{lib}/media", f"/libraries/{alice.default_library_id}/media"):
        assert (await bob.get(path)).outcome == (404, "E_LIBRARY_NOT_FOUND")


# ------------------------------------------------------------------------ members


async def test_members_list_and_role_change(alice: User, bob: User, carol: User) -> None:
    lib = await alice.create_library()
    await bob.join(alice, lib)
    r = await bob.get(f"/libraries/{lib}/members")
    assert r.status == 200
    members = r.json["data"]
    assert all(set(m) == MEMBER_KEYS for m in members)
    assert [(m["user_id"], m["role"], m["is_owner"]) for m in members] == [
        (str(alice.id), "admin", True),
        (str(bob.id), "member", False),
    ]
    assert (await carol.get(f"/libraries/{lib}/members")).outcome == (404, "E_LIBRARY_NOT_FOUND")
    r = await alice.patch(f"/libraries/{lib}/members/{bob.id}", json={"role": "admin"})
    assert r.status == 200
    assert r.data == {**r.data, "user_id": str(bob.id), "role": "admin", "is_owner": False}
    assert set(r.data) == MEMBER_KEYS
    owner = {"role": "owner"}
    r = await alice.patch(f"/libraries/{lib}/members/{bob.id}", json=owner)
    assert r.outcome == (400, "E_INVALID_REQUEST")


async def test_member_role_errors(alice: User, bob: User, carol: User) -> None:
    lib = await alice.create_library()
    await bob.join(alice, lib)
    path = f"/libraries/{lib}/members"
    admin, member = {"role": "admin"}, {"role": "member"}
    assert (await carol.patch(f"{path}/{bob.id}", json=admin)).outcome == (
        404,
        "E_LIBRARY_NOT_FOUND",
    )
    assert (await bob.patch(f"{path}/{bob.id}", json=admin)).outcome == (403, "E_FORBIDDEN")
    assert (await alice.patch(f"{path}/{carol.id}", json=admin)).outcome == (404, "E_NOT_FOUND")
    r = await alice.patch(f"{path}/{alice.id}", json=member)
    assert r.outcome == (403, "E_OWNER_EXIT_FORBIDDEN")
    in_default = f"/libraries/{alice.default_library_id}/members/{alice.id}"
    r = await alice.patch(in_default, json=member)
    assert r.outcome == (403, "E_DEFAULT_LIBRARY_FORBIDDEN")
    assert (await alice.delete(in_default)).outcome == (403, "E_DEFAULT_LIBRARY_FORBIDDEN")


async def _owner_demoted(owner: User, admin: User, sm: Sm) -> uuid.UUID:
    """A library of `owner` where `admin` is an admin and the owner's own membership was
    demoted to member by SQL (an invariant the service never breaks itself)."""
    lib = await owner.create_library()
    await admin.join(owner, lib, role="admin")
    await execute(
        sm,
        "UPDATE memberships SET role = 'member' WHERE library_id = :l AND user_id = :u",
        l=lib,
        u=owner.id,
    )
    return lib


async def test_last_admin_is_protected(alice: User, bob: User, sessionmaker: Sm) -> None:
    """Unreachable while the owner holds admin (the service repairs that on every
    mutation); forced here by breaking the invariant with SQL."""
    lib = await _owner_demoted(alice, bob, sessionmaker)
    bob_in_lib = f"/libraries/{lib}/members/{bob.id}"
    r = await bob.patch(bob_in_lib, json={"role": "member"})
    assert r.outcome == (403, "E_LAST_ADMIN_FORBIDDEN")
    assert (await bob.delete(bob_in_lib)).outcome == (403, "E_LAST_ADMIN_FORBIDDEN")


async def test_owner_admin_is_repaired_by_a_mutation(
    alice: User, bob: User, sessionmaker: Sm
) -> None:
    lib = await _owner_demoted(alice, bob, sessionmaker)
    assert (await bob.patch(f"/libraries/{lib}", json={"name": "fixed"})).status == 200
    role = await scalar(
        sessionmaker,
        "SELECT role FROM memberships WHERE library_id = :l AND user_id = :u",
        l=lib,
        u=alice.id,
    )
    assert role == "admin"


async def test_remove_member_and_leave(
    alice: User, bob: User, carol: User, sessionmaker: Sm
) -> None:
    lib, m = await _library_with_media(alice, sessionmaker, bob, carol)
    assert (await bob.get(f"/media/{m}")).status == 200
    members = f"/libraries/{lib}/members"
    assert (await bob.delete(f"{members}/{carol.id}")).outcome == (403, "E_FORBIDDEN")
    r = await bob.delete(f"{members}/{bob.id}")  # leave
    assert (r.status, r.json) == (204, None)
    assert (await bob.get(f"/libraries/{lib}")).code == "E_LIBRARY_NOT_FOUND"
    assert (await bob.get(f"/media/{m}")).code == "E_MEDIA_NOT_FOUND"
    assert (await bob.get(f"/libraries/{bob.default_library_id}/media")).json["data"] == []
    jobs = await scalar(
        sessionmaker,
        "SELECT count(*) FROM default_library_backfill_jobs WHERE user_id = :u",
        u=bob.id,
    )
    assert jobs == 0
    assert (await alice.delete(f"{members}/{carol.id}")).status == 204
    assert (await alice.delete(f"{members}/{carol.id}")).outcome == (404, "E_NOT_FOUND")
    r = await alice.delete(f"{members}/{alice.id}")
    assert r.outcome == (403, "E_OWNER_EXIT_FORBIDDEN")
    assert (await carol.delete(f"{members}/{alice.id}")).outcome == (404, "E_LIBRARY_NOT_FOUND")


# ---------------------------------------------------------------------- ownership


async def test_transfer_ownership(alice: User, bob: User, carol: User) -> None:
    lib = await alice.create_library()
    await bob.join(alice, lib)
    path = f"/libraries/{lib}/transfer-ownership"
    to_bob = {"user_id": str(bob.id)}
    assert (await carol.post(path, json=to_bob)).outcome == (404, "E_LIBRARY_NOT_FOUND")
    assert (await bob.post(path, json=to_bob)).outcome == (403, "E_OWNER_REQUIRED")
    for target in (carol.id, alice.id, uuid.uuid4()):
        r = await alice.post(path, json={"user_id": str(target)})
        assert r.outcome == (409, "E_OWNERSHIP_TRANSFER_INVALID")
    assert (await alice.post(path, json={})).outcome == (400, "E_INVALID_REQUEST")
    r = await alice.post(f"/libraries/{alice.default_library_id}/transfer-ownership", json=to_bob)
    assert r.outcome == (403, "E_DEFAULT_LIBRARY_FORBIDDEN")

    r = await alice.post(path, json=to_bob)
    assert r.status == 200
    assert set(r.data) == LIBRARY_KEYS
    assert (r.data["owner_user_id"], r.data["role"]) == (str(bob.id), "admin")
    members = (await bob.get(f"/libraries/{lib}/members")).json["data"]
    assert {(m["user_id"], m["role"], m["is_owner"]) for m in members} == {
        (str(alice.id), "admin", False),
        (str(bob.id), "admin", True),
    }
    # the former owner may now leave; the new one may not
    assert (await bob.delete(f"/libraries/{lib}/members/{bob.id}")).code == (
        "E_OWNER_EXIT_FORBIDDEN"
    )
    assert (await alice.delete(f"/libraries/{lib}/members/{alice.id}")).status == 204
