"""Media read routes: shape, capabilities, can_read_media, merges, fragments (SPEC §4, §8)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.media import repo
from nexus.media.schemas import MediaOut
from nexus.sharing import closure
from tests.support.library_api import User, execute, insert_media, walk

MEDIA_KEYS = {
    "id",
    "kind",
    "title",
    "canonical_source_url",
    "processing_status",
    "failure_stage",
    "last_error_code",
    "capabilities",
    "created_at",
    "updated_at",
}
Sm = async_sessionmaker[AsyncSession]


async def test_get_media_shape(alice: User, sessionmaker: Sm) -> None:
    m = await insert_media(sessionmaker, title="Hello", intrinsic_for=alice.default_library_id)
    r = await alice.get(f"/media/{m}")
    assert r.status == 200
    assert set(r.data) == MEDIA_KEYS
    assert r.data["id"] == str(m)
    assert (r.data["kind"], r.data["title"]) == ("web_article", "Hello")
    assert r.data["canonical_source_url"] == "https://example.com/a"
    assert (r.data["processing_status"], r.data["failure_stage"]) == ("pending", None)
    assert r.data["last_error_code"] is None
    assert not any(r.data["capabilities"].values())


async def test_failed_media_shows_stage_and_code(alice: User, sessionmaker: Sm) -> None:
    m = await insert_media(sessionmaker, status="failed", intrinsic_for=alice.default_library_id)
    await execute(
        sessionmaker,
        "UPDATE media SET failure_stage = 'extract', last_error_code = 'E_EXTRACTION_EMPTY', "
        "last_error_message = 'secret detail' WHERE id = :m",
        m=m,
    )
    r = await alice.get(f"/media/{m}")
    assert (r.data["failure_stage"], r.data["last_error_code"]) == ("extract", "E_EXTRACTION_EMPTY")
    assert "secret detail" not in str(r.json)


CAPS = ("can_read", "can_highlight", "can_quote", "can_search", "can_play", "can_download_file")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"kind": "web_article", "status": "pending"}, ""),
        ({"kind": "web_article", "status": "extracting", "fragments": ["t"]}, "quote search"),
        (
            {"kind": "web_article", "status": "ready_for_reading", "fragments": ["text"]},
            "read highlight quote search",
        ),
        ({"kind": "web_article", "status": "embedding"}, "read highlight"),
        ({"kind": "epub", "status": "ready", "fragments": ["  "]}, "read highlight"),
        ({"kind": "epub", "status": "failed"}, ""),
        ({"kind": "pdf", "status": "pending", "file": True}, "read highlight download_file"),
        ({"kind": "pdf", "status": "ready_for_reading"}, ""),
        (
            {"kind": "pdf", "status": "ready", "file": True, "fragments": ["p1"]},
            "read highlight quote search download_file",
        ),
        ({"kind": "video", "status": "pending", "playback_url": "https://v.example/1"}, "play"),
        (
            {"kind": "podcast_episode", "status": "ready", "playback_url": "https://p/1"},
            "read highlight play",
        ),
        ({"kind": "video", "status": "ready"}, "read highlight"),
        (
            {"kind": "web_article", "status": "ready", "playback_url": "https://p/1"},
            "read highlight",
        ),
    ],
)
async def test_capabilities(
    alice: User, sessionmaker: Sm, spec: dict[str, object], expected: str
) -> None:
    m = await insert_media(sessionmaker, intrinsic_for=alice.default_library_id, **spec)  # type: ignore[arg-type]
    caps = (await alice.get(f"/media/{m}")).data["capabilities"]
    assert {k for k, v in caps.items() if v} == {f"can_{c}" for c in expected.split()}


async def test_unreadable_and_missing_media_are_404(
    alice: User, bob: User, sessionmaker: Sm
) -> None:
    m = await insert_media(sessionmaker, fragments=["x"], intrinsic_for=alice.default_library_id)
    bare = await insert_media(sessionmaker)
    await execute(
        sessionmaker,
        "INSERT INTO library_media (library_id, media_id) VALUES (:d, :m)",
        d=bob.default_library_id,
        m=bare,
    )
    for user, media_id in ((bob, m), (alice, uuid.uuid4()), (bob, bare)):
        for path in (f"/media/{media_id}", f"/media/{media_id}/fragments"):
            assert (await user.get(path)).outcome == (404, "E_MEDIA_NOT_FOUND")


async def test_merged_media_answers_with_the_winner(
    alice: User, bob: User, sessionmaker: Sm
) -> None:
    winner = await insert_media(
        sessionmaker, title="winner", fragments=["w"], intrinsic_for=alice.default_library_id
    )
    loser, older = uuid.uuid4(), uuid.uuid4()
    await execute(
        sessionmaker,
        "INSERT INTO media_merges (from_media_id, into_media_id) VALUES (:l, :w)",
        l=loser,
        w=winner,
    )
    # a chain: older -> loser -> winner (loser no longer exists as media)
    await execute(
        sessionmaker,
        "INSERT INTO media_merges (from_media_id, into_media_id) VALUES (:o, :w)",
        o=older,
        w=winner,
    )
    for media_id in (loser, older):
        r = await alice.get(f"/media/{media_id}")
        assert (r.status, r.data["id"], r.data["title"]) == (200, str(winner), "winner")
        r = await alice.get(f"/media/{media_id}/fragments")
        assert r.status == 200
        assert r.json["media_id"] == str(winner)
        assert [f["canonical_text"] for f in r.json["data"]] == ["w"]
        assert (await bob.get(f"/media/{media_id}")).outcome == (404, "E_MEDIA_NOT_FOUND")


async def test_merge_chain_is_followed(alice: User, sessionmaker: Sm) -> None:
    final = await insert_media(sessionmaker, title="final", intrinsic_for=alice.default_library_id)
    middle = await insert_media(sessionmaker, title="middle")
    first = uuid.uuid4()
    await execute(
        sessionmaker,
        "INSERT INTO media_merges (from_media_id, into_media_id) VALUES (:a, :b), (:b, :c)",
        a=first,
        b=middle,
        c=final,
    )
    r = await alice.get(f"/media/{first}")
    assert (r.status, r.data["id"]) == (200, str(final))


async def test_fragments(alice: User, sessionmaker: Sm) -> None:
    texts = [f"paragraph {i}" for i in range(7)]
    m = await insert_media(
        sessionmaker,
        status="ready_for_reading",
        fragments=texts,
        intrinsic_for=alice.default_library_id,
    )
    r = await alice.get(f"/media/{m}/fragments")
    assert r.status == 200
    assert set(r.json) == {"data", "media_id", "capabilities", "page"}
    assert r.json["capabilities"]["can_read"] is True
    assert r.json["page"] == {"next_cursor": None, "has_more": False}
    first = r.json["data"][0]
    assert set(first) == {"id", "idx", "canonical_text", "html_sanitized", "created_at"}
    assert (first["idx"], first["html_sanitized"]) == (0, "<p>paragraph 0</p>")
    walked = await walk(alice, f"/media/{m}/fragments", limit=3)
    assert [f["idx"] for f in walked] == list(range(7))
    assert [f["canonical_text"] for f in walked] == texts


async def test_fragment_cursor_of_another_media_is_refused(alice: User, sessionmaker: Sm) -> None:
    a = await insert_media(
        sessionmaker, fragments=["1", "2"], intrinsic_for=alice.default_library_id
    )
    b = await insert_media(
        sessionmaker, fragments=["1", "2"], intrinsic_for=alice.default_library_id
    )
    cursor = (await alice.get(f"/media/{a}/fragments?limit=1")).json["page"]["next_cursor"]
    r = await alice.get(f"/media/{b}/fragments?limit=1&cursor={cursor}")
    assert r.outcome == (400, "E_INVALID_CURSOR")


async def test_readability_follows_membership(alice: User, bob: User, sessionmaker: Sm) -> None:
    lib = await alice.create_library()
    m = await insert_media(sessionmaker, intrinsic_for=alice.default_library_id)
    await alice.post(f"/libraries/{lib}/media", json={"media_id": str(m)})
    await bob.join(alice, lib)
    assert (await bob.get(f"/media/{m}")).status == 200
    await alice.delete(f"/libraries/{lib}/members/{bob.id}")
    assert (await bob.get(f"/media/{m}")).code == "E_MEDIA_NOT_FOUND"


async def test_sql_predicate_matches_can_read_media(
    alice: User, bob: User, sessionmaker: Sm
) -> None:
    """The inlined list filter (`repo.READABLE_BY_VIEWER`) and `closure.readable_media_ids`
    agree on every (viewer, media) of a mixed scenario."""
    lib = await alice.create_library()
    other = await alice.create_library("other")
    await bob.join(alice, lib)
    await bob.join(alice, other)
    own = await insert_media(sessionmaker, intrinsic_for=bob.default_library_id)
    shared = await insert_media(sessionmaker, intrinsic_for=alice.default_library_id)
    left = await insert_media(sessionmaker, intrinsic_for=alice.default_library_id)
    bare = await insert_media(sessionmaker)
    await alice.post(f"/libraries/{lib}/media", json={"media_id": str(shared)})
    await alice.post(f"/libraries/{other}/media", json={"media_id": str(left)})
    await bob.delete(f"/libraries/{other}/members/{bob.id}")
    await execute(
        sessionmaker,
        "INSERT INTO library_media (library_id, media_id) VALUES (:d, :m)",
        d=bob.default_library_id,
        m=bare,
    )
    everything = [own, shared, left, bare]
    async with sessionmaker() as s:
        for viewer in (alice.id, bob.id, uuid.uuid4()):
            expected = await closure.readable_media_ids(s, viewer, everything)
            rows = await s.execute(
                text(
                    f"SELECT m.id FROM media m WHERE m.id = ANY(:ids) AND {repo.READABLE_BY_VIEWER}"
                ),
                {"ids": everything, "viewer": viewer},
            )
            assert {r[0] for r in rows} == expected
    assert expected == set()
    async with sessionmaker() as s:
        assert await closure.readable_media_ids(s, bob.id, everything) == {own, shared}


async def test_adding_a_merged_id_adds_the_winner(alice: User, sessionmaker: Sm) -> None:
    winner = await insert_media(sessionmaker, intrinsic_for=alice.default_library_id)
    loser = uuid.uuid4()
    await execute(
        sessionmaker,
        "INSERT INTO media_merges (from_media_id, into_media_id) VALUES (:l, :w)",
        l=loser,
        w=winner,
    )
    lib = await alice.create_library()
    r = await alice.post(f"/libraries/{lib}/media", json={"media_id": str(loser)})
    assert (r.status, r.data["id"]) == (201, str(winner))
    r = await alice.post(f"/libraries/{lib}/media", json={"media_id": str(winner)})
    assert r.status == 200


async def test_hot_reads_write_each_stored_instant_as_the_apis_timestamp(
    alice: User, sessionmaker: Sm
) -> None:
    """The media read, the library page and the fragments page render their timestamps in
    SQL (`nexus.db.raw.utc_text`): the text is the one the model would write for the
    stored instant, a fraction only when there are microseconds, and the page's cursor
    still continues after the right row."""
    m = await insert_media(
        sessionmaker, fragments=["a", "b"], intrinsic_for=alice.default_library_id
    )
    other = await insert_media(sessionmaker, intrinsic_for=alice.default_library_id)
    await execute(
        sessionmaker,
        "UPDATE media SET created_at = '2026-03-01 10:00:00+00', "
        "updated_at = '2026-03-01 10:00:00.23+00' WHERE id = :m",
        m=m,
    )
    await execute(
        sessionmaker,
        "UPDATE fragments SET created_at = '2026-03-01 12:30:00.000001+02' WHERE media_id = :m",
        m=m,
    )
    await execute(
        sessionmaker,
        "UPDATE library_media SET created_at = CASE media_id WHEN :m "
        "THEN TIMESTAMPTZ '2026-03-01 10:00:00+00' ELSE '2026-03-01 10:00:00.5+00' END "
        "WHERE library_id = :lib",
        m=m,
        lib=alice.default_library_id,
    )
    one = await alice.get(f"/media/{m}")
    assert (one.data["created_at"], one.data["updated_at"]) == (
        "2026-03-01T10:00:00Z",
        "2026-03-01T10:00:00.230000Z",
    )
    # The model's own writing of the same instants.
    assert MediaOut.model_validate(one.data).model_dump(mode="json") == one.data
    frags = await alice.get(f"/media/{m}/fragments")
    assert [f["created_at"] for f in frags.data] == ["2026-03-01T10:30:00.000001Z"] * 2
    first = await alice.get(f"/libraries/{alice.default_library_id}/media?limit=1")
    assert [x["id"] for x in first.data] == [str(m)]
    cursor = first.json["page"]["next_cursor"]
    rest = await alice.get(f"/libraries/{alice.default_library_id}/media?limit=1&cursor={cursor}")
    assert [x["id"] for x in rest.data] == [str(other)]
