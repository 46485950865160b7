"""X-Request-ID / X-Correlation-ID: accepted, normalised or replaced; echoed everywhere."""

from __future__ import annotations

import uuid

from tests.support.webapp import Api


async def test_valid_request_id_is_echoed(api: Api) -> None:
    r = await api.get("/health", headers={"X-Request-ID": "abc.DEF_123-x"})
    assert r.headers["X-Request-ID"] == "abc.DEF_123-x"
    assert r.headers["X-Correlation-ID"] == "abc.DEF_123-x"


async def test_uuid_request_id_is_lower_cased(api: Api) -> None:
    rid = uuid.uuid4()
    r = await api.get("/health", headers={"X-Request-ID": str(rid).upper()})
    assert r.headers["X-Request-ID"] == str(rid)


async def test_invalid_request_ids_are_replaced(api: Api) -> None:
    for bad in ("x" * 129, "white space", "<script>"):
        r = await api.get("/health", headers={"X-Request-ID": bad})
        assert uuid.UUID(r.headers["X-Request-ID"]).version == 4


async def test_missing_request_id_is_generated(api: Api) -> None:
    r = await api.get("/health")
    assert uuid.UUID(r.headers["X-Request-ID"]).version == 4
    assert r.headers["X-Correlation-ID"] == r.headers["X-Request-ID"]


async def test_correlation_id_is_accepted_or_falls_back(api: Api) -> None:
    r = await api.get("/health", headers={"X-Request-ID": "r-1", "X-Correlation-ID": "c-1"})
    assert (r.headers["X-Request-ID"], r.headers["X-Correlation-ID"]) == ("r-1", "c-1")
    r = await api.get("/health", headers={"X-Request-ID": "r-2", "X-Correlation-ID": "bad c"})
    assert r.headers["X-Correlation-ID"] == "r-2"


async def test_errors_carry_the_request_id_in_header_and_body(api: Api) -> None:
    r = await api.get("/me", internal=None, headers={"X-Request-ID": "err-1"})
    assert r.status_code == 403
    assert r.headers["X-Request-ID"] == "err-1"
    assert (await r.get_json())["error"]["request_id"] == "err-1"

    r = await api.get("/nowhere")
    assert r.status_code == 404
    assert (await r.get_json())["error"]["request_id"] == r.headers["X-Request-ID"]
