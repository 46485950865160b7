from __future__ import annotations

import uuid

import pytest

from web import request_ids


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("abc", "abc"),
        ("A.b_c-9", "A.b_c-9"),
        ("x" * 128, "x" * 128),
        ("0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
        ("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
    ],
)
def test_accepted_ids(raw: str, expected: str) -> None:
    assert request_ids.normalise(raw) == expected


@pytest.mark.parametrize("raw", [None, "", "x" * 129, "has space", "semi;colon", "ünïcode", "a/b"])
def test_rejected_ids(raw: str | None) -> None:
    assert request_ids.normalise(raw) is None


def test_resolve_replaces_bad_request_id_with_uuid4() -> None:
    rid, cid = request_ids.resolve("bad id!", None)
    assert uuid.UUID(rid).version == 4
    assert cid == rid


def test_resolve_correlation_follows_its_own_rule() -> None:
    assert request_ids.resolve("r1", "c1") == ("r1", "c1")
    assert request_ids.resolve("r1", "bad c!") == ("r1", "r1")
