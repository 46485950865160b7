"""SSRF-hardened fetcher against a raw HTTP server on 127.0.0.1 (allow-listed); DNS is faked.

No test touches the internet: public-looking names are answered by a monkeypatched
`nexus.fetching.fetch.resolve_host`, and blocked hops must fail before any connect.
"""

from __future__ import annotations

import gzip
import ipaddress
import socket
from collections.abc import Callable

import pytest

from nexus.config import Settings
from nexus.errors import TerminalError, TransientError
from nexus.fetching import fetch
from nexus.fetching.fetch import FetchPolicy, fetch_url
from nexus.fetching.urls import IPAddress
from tests.fetch.server import (
    PAGE,
    PDF_BYTES,
    LocalServer,
    endless,
    gzipped,
    redirect,
    respond,
    slow_headers,
)

LOCAL = FetchPolicy(allow_hosts=("127.0.0.1",))


def fake_dns(
    monkeypatch: pytest.MonkeyPatch, table: dict[str, list[str]]
) -> Callable[[], list[str]]:
    calls: list[str] = []

    async def resolver(host: str, port: int) -> list[IPAddress]:
        calls.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ipaddress.ip_address(a) for a in table[host]]

    monkeypatch.setattr(fetch, "resolve_host", resolver)
    return lambda: calls


async def expect_terminal(code: str, url: str, policy: FetchPolicy = LOCAL) -> TerminalError:
    with pytest.raises(TerminalError) as info:
        await fetch_url(url, policy=policy)
    assert info.value.code == code, info.value.message
    return info.value


async def expect_transient(code: str, url: str, policy: FetchPolicy = LOCAL) -> TransientError:
    with pytest.raises(TransientError) as info:
        await fetch_url(url, policy=policy)
    assert info.value.code == code, info.value.message
    return info.value


# --- success ----------------------------------------------------------------------------


async def test_plain_page(server: LocalServer) -> None:
    server.routes["/page"] = respond(200, PAGE, "text/html; charset=utf-8")
    result = await fetch_url(server.url("/page?utm_source=x&a=1#top"), policy=LOCAL)
    assert result.kind == "web_article"
    assert result.status == 200
    assert result.content_type == "text/html"
    assert result.charset == "utf-8"
    assert result.body == PAGE
    assert result.final_url == server.url("/page?a=1")
    assert result.redirects == ()
    assert server.requests[0].headers["host"] == f"127.0.0.1:{server.port}"
    assert server.requests[0].query == {"a": ["1"]}  # tracking parameters never sent


async def test_policy_from_settings() -> None:
    settings = Settings(fetch_allow_hosts="127.0.0.1, pages.test")
    policy = FetchPolicy.from_settings(settings, timeout=2.0)
    assert policy.allow_hosts == ("127.0.0.1", "pages.test")
    assert policy.allowed_ports == frozenset({80, 443})
    assert policy.timeout == 2.0


async def test_redirect_chain_of_five_is_followed(server: LocalServer) -> None:
    for i in range(5, 0, -1):
        server.routes[f"/r{i}"] = redirect(f"/r{i - 1}" if i > 1 else "/page", 301 + i % 3)
    server.routes["/page"] = respond(200, PAGE, "text/html")
    result = await fetch_url(server.url("/r5"), policy=LOCAL)
    assert result.final_url == server.url("/page")
    assert result.redirects == tuple(server.url(f"/r{i}") for i in range(5, 0, -1))
    assert server.paths() == ["/r5", "/r4", "/r3", "/r2", "/r1", "/page"]


async def test_more_than_five_redirects_fail(server: LocalServer) -> None:
    for i in range(6, 0, -1):
        server.routes[f"/r{i}"] = redirect(f"/r{i - 1}")
    server.routes["/r0"] = respond(200, PAGE, "text/html")
    err = await expect_terminal("E_FETCH_FAILED", server.url("/r6"))
    assert "redirects" in err.message
    assert "/r0" not in server.paths()


async def test_redirect_loop_fails(server: LocalServer) -> None:
    server.routes["/a"] = redirect("/b")
    server.routes["/b"] = redirect("/a")
    await expect_terminal("E_FETCH_FAILED", server.url("/a"))
    assert len(server.requests) == 6


async def test_absolute_redirect_with_301_303_307_308(server: LocalServer) -> None:
    server.routes["/a"] = redirect(server.url("/b"), 301)
    server.routes["/b"] = redirect(server.url("/c"), 303)
    server.routes["/c"] = redirect("d", 307)
    server.routes["/d"] = redirect("/page", 308)
    server.routes["/page"] = respond(200, PAGE, "text/html")
    assert (await fetch_url(server.url("/a"), policy=LOCAL)).final_url == server.url("/page")


# --- SSRF: redirects --------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:10.0.0.1]/",
        "http://[::1]/",
        "http://[fd00::1]/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://0xa9.0xfe.0xa9.0xfe/",
        "http://2852039166/",
        "http://localhost/",
        "http://metadata.local/",
    ],
)
async def test_redirect_to_private_address_is_blocked_without_connecting(
    server: LocalServer, connects: list[tuple[str, int]], target: str
) -> None:
    server.routes["/go"] = redirect(target)
    await expect_terminal("E_SSRF_BLOCKED", server.url("/go"))
    assert connects == [("127.0.0.1", server.port)]  # only the allowed first hop


async def test_redirect_to_name_resolving_private_is_blocked(
    server: LocalServer, connects: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = fake_dns(monkeypatch, {"innocent.example": ["10.9.8.7"]})
    server.routes["/go"] = redirect("http://innocent.example/")
    await expect_terminal("E_SSRF_BLOCKED", server.url("/go"))
    assert calls() == ["innocent.example"]
    assert connects == [("127.0.0.1", server.port)]


async def test_redirect_to_other_port_of_public_host_is_blocked(
    server: LocalServer, connects: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"public.example": ["93.184.216.34"]})
    server.routes["/go"] = redirect("http://public.example:6379/")
    err = await expect_terminal("E_SSRF_BLOCKED", server.url("/go"))
    assert "port" in err.message
    assert connects == [("127.0.0.1", server.port)]


@pytest.mark.parametrize(
    "target", ["ftp://example.com/x", "file:///etc/passwd", "http://user:pw@example.com/"]
)
async def test_redirect_to_bad_url_fails(server: LocalServer, target: str) -> None:
    server.routes["/go"] = redirect(target)
    await expect_terminal("E_FETCH_FAILED", server.url("/go"))


async def test_redirect_without_location_fails(server: LocalServer) -> None:
    server.routes["/go"] = respond(302, b"", "text/html")
    await expect_terminal("E_FETCH_FAILED", server.url("/go"))


# --- SSRF: DNS and first hop ------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        ["127.0.0.1"],
        ["10.0.0.1"],
        ["192.168.1.10"],
        ["169.254.169.254"],
        ["::ffff:127.0.0.1"],
        ["::1"],
        ["fe80::1"],
        ["93.184.216.34", "10.0.0.1"],  # any non-public answer blocks
        ["2606:2800:220:1::1", "fd12::1"],
    ],
)
async def test_name_resolving_to_non_public_address_is_blocked(
    monkeypatch: pytest.MonkeyPatch, connects: list[tuple[str, int]], answer: list[str]
) -> None:
    fake_dns(monkeypatch, {"public-looking.example": answer})
    await expect_terminal(
        "E_SSRF_BLOCKED", "http://public-looking.example/", FetchPolicy(allow_hosts=())
    )
    assert connects == []


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/", "http://localhost/", "http://[::1]/", "http://0x7f.1/"]
)
async def test_first_hop_private_is_blocked_without_allow_list(
    url: str, connects: list[tuple[str, int]]
) -> None:
    await expect_terminal("E_SSRF_BLOCKED", url, FetchPolicy())
    assert connects == []


async def test_allow_list_of_one_ip_does_not_allow_localhost_name(
    server: LocalServer, connects: list[tuple[str, int]]
) -> None:
    await expect_terminal("E_SSRF_BLOCKED", f"http://localhost:{server.port}/")
    assert connects == []


async def test_allow_list_by_host_name(server: LocalServer) -> None:
    server.routes["/page"] = respond(200, PAGE, "text/html")
    policy = FetchPolicy(allow_hosts=("localhost",))
    result = await fetch_url(f"http://localhost:{server.port}/page", policy=policy)
    assert result.kind == "web_article"
    assert server.requests[0].headers["host"] == f"localhost:{server.port}"


async def test_port_rule_blocks_before_connecting(
    monkeypatch: pytest.MonkeyPatch, connects: list[tuple[str, int]]
) -> None:
    fake_dns(monkeypatch, {"public.example": ["93.184.216.34"]})
    await expect_terminal("E_SSRF_BLOCKED", "http://public.example:8080/", FetchPolicy())
    assert connects == []


async def test_unknown_name_is_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {})
    await expect_terminal("E_FETCH_FAILED", "http://nowhere.example/", FetchPolicy())


async def test_temporary_dns_failure_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    async def resolver(host: str, port: int) -> list[IPAddress]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(fetch, "resolve_host", resolver)
    await expect_transient("E_FETCH_FAILED", "http://flaky.example/", FetchPolicy())


async def test_connects_to_checked_address_not_a_second_lookup(
    server: LocalServer, connects: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the first answer is checked and used; a later answer never matters.

    `rebind.test` does not exist in real DNS, so the fetch can only succeed if the
    connection goes to the address the fetcher checked (127.0.0.1, allow-listed).
    """
    answers = [["127.0.0.1"], ["10.0.0.1"], ["169.254.169.254"]]
    calls: list[str] = []

    async def rebinding(host: str, port: int) -> list[IPAddress]:
        calls.append(host)
        return [ipaddress.ip_address(a) for a in answers[min(len(calls) - 1, 2)]]

    monkeypatch.setattr(fetch, "resolve_host", rebinding)
    server.routes["/page"] = respond(200, PAGE, "text/html")
    result = await fetch_url(f"http://rebind.test:{server.port}/page", policy=LOCAL)
    assert b"Hi" in result.body
    assert calls == ["rebind.test"]
    assert connects == [("127.0.0.1", server.port)]
    assert server.requests[0].headers["host"] == f"rebind.test:{server.port}"


async def test_environment_proxy_is_ignored(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://10.0.0.1:3128")
    monkeypatch.setenv("ALL_PROXY", "http://10.0.0.1:3128")
    server.routes["/page"] = respond(200, PAGE, "text/html")
    assert (await fetch_url(server.url("/page"), policy=LOCAL)).status == 200


# --- limits -----------------------------------------------------------------------------


async def test_slow_headers_time_out(server: LocalServer) -> None:
    server.routes["/slow"] = slow_headers(5)
    policy = FetchPolicy(allow_hosts=("127.0.0.1",), timeout=0.3)
    await expect_transient("E_FETCH_TIMEOUT", server.url("/slow"), policy)


async def test_trickling_body_hits_the_total_deadline(server: LocalServer) -> None:
    server.routes["/trickle"] = endless(server, "trickle", b"x", delay=0.05)
    policy = FetchPolicy(allow_hosts=("127.0.0.1",), timeout=0.5)
    await expect_transient("E_FETCH_TIMEOUT", server.url("/trickle"), policy)


async def test_endless_body_is_cut_while_streaming(server: LocalServer) -> None:
    """An endless body can only end in E_FETCH_TOO_LARGE if the cap is checked per chunk."""
    server.routes["/huge"] = endless(server, "huge", b"a" * 65536)
    policy = FetchPolicy(allow_hosts=("127.0.0.1",), timeout=20)
    await expect_terminal("E_FETCH_TOO_LARGE", server.url("/huge"), policy)
    assert server.bytes_sent["huge"] >= 10 * 1024 * 1024


async def test_declared_length_over_cap_fails_at_once(server: LocalServer) -> None:
    async def handler(writer, request):  # type: ignore[no-untyped-def]
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 20000000\r\n\r\n"
        )

    server.routes["/big"] = handler
    await expect_terminal("E_FETCH_TOO_LARGE", server.url("/big"))


async def test_gzip_bomb_is_capped_on_decoded_size(server: LocalServer) -> None:
    server.routes["/bomb"] = gzipped(b"\0" * (30 * 1024 * 1024))
    await expect_terminal("E_FETCH_TOO_LARGE", server.url("/bomb"))


async def test_smaller_cap(server: LocalServer) -> None:
    server.routes["/page"] = respond(200, b"<p>" + b"x" * 5000 + b"</p>", "text/html")
    policy = FetchPolicy(allow_hosts=("127.0.0.1",), max_bytes=4096)
    await expect_terminal("E_FETCH_TOO_LARGE", server.url("/page"), policy)


# --- statuses ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [404, 410, 400, 401, 403])
async def test_client_errors_are_terminal(server: LocalServer, status: int) -> None:
    server.routes["/x"] = respond(status, b"no", "text/html")
    await expect_terminal("E_FETCH_FAILED", server.url("/x"))


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
async def test_server_errors_are_transient(server: LocalServer, status: int) -> None:
    server.routes["/x"] = respond(status, b"later", "text/html")
    await expect_transient("E_FETCH_FAILED", server.url("/x"))


async def test_connection_refused_is_transient() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    await expect_transient("E_FETCH_FAILED", f"http://127.0.0.1:{port}/")


async def test_connection_closed_without_answer_is_transient(server: LocalServer) -> None:
    async def hang_up(writer, request):  # type: ignore[no-untyped-def]
        writer.close()

    server.routes["/x"] = hang_up
    await expect_transient("E_FETCH_FAILED", server.url("/x"))


# --- content types and charsets ---------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["image/png", "application/json", "text/plain", "video/mp4", "text/css"]
)
async def test_unsupported_content_type(server: LocalServer, content_type: str) -> None:
    server.routes["/x"] = respond(200, b"\x89PNG....", content_type)
    await expect_terminal("E_UNSUPPORTED_CONTENT", server.url("/x"))


async def test_unsupported_endless_body_is_rejected_early(server: LocalServer) -> None:
    async def video(writer, request):  # type: ignore[no-untyped-def]
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\n\r\n")
        server.bytes_sent["video"] = 0
        while True:
            writer.write(b"v" * 65536)
            await writer.drain()
            server.bytes_sent["video"] += 65536

    server.routes["/v"] = video
    await expect_terminal("E_UNSUPPORTED_CONTENT", server.url("/v"))
    assert server.bytes_sent["video"] < 10 * 1024 * 1024


@pytest.mark.parametrize(
    "content_type", ["application/pdf", "application/octet-stream", None, "text/html"]
)
async def test_pdf_by_type_or_magic(server: LocalServer, content_type: str | None) -> None:
    server.routes["/doc"] = respond(200, PDF_BYTES, content_type)
    result = await fetch_url(server.url("/doc"), policy=LOCAL)
    assert result.kind == "pdf"
    assert result.body == PDF_BYTES
    assert result.charset is None


async def test_html_without_content_type_is_sniffed(server: LocalServer) -> None:
    server.routes["/x"] = respond(200, PAGE, None)
    assert (await fetch_url(server.url("/x"), policy=LOCAL)).kind == "web_article"


async def test_xhtml_is_an_article(server: LocalServer) -> None:
    server.routes["/x"] = respond(200, PAGE, "application/xhtml+xml; charset=utf-8")
    assert (await fetch_url(server.url("/x"), policy=LOCAL)).kind == "web_article"


async def test_charset_is_passed_on_undecoded(server: LocalServer) -> None:
    """The fetcher never decodes: the declared label travels, unchecked, with the bytes to
    the extraction processes (tests/unit/test_charsets.py covers the decoding)."""
    body = "<p>Café über</p>".encode("latin-1")
    server.routes["/x"] = respond(200, body, "text/html; charset=ISO-8859-1")
    server.routes["/p"] = respond(200, b"<p>" + b"a" * 4096, "text/html; charset=punycode")
    server.routes["/n"] = respond(200, body, "text/html")
    result = await fetch_url(server.url("/x"), policy=LOCAL)
    assert (result.body, result.charset) == (body, "ISO-8859-1")
    result = await fetch_url(server.url("/p"), policy=LOCAL)
    assert (result.kind, result.charset) == ("web_article", "punycode")
    assert (await fetch_url(server.url("/n"), policy=LOCAL)).charset is None


async def test_gzip_body_is_decoded(server: LocalServer) -> None:
    server.routes["/z"] = gzipped(PAGE)
    result = await fetch_url(server.url("/z"), policy=LOCAL)
    assert result.body == PAGE
    assert server.requests[0].headers["accept-encoding"] == "gzip, deflate"


async def test_corrupt_gzip_is_terminal(server: LocalServer) -> None:
    server.routes["/z"] = respond(200, b"not gzip at all", "text/html", Content_Encoding="gzip")
    await expect_terminal("E_FETCH_FAILED", server.url("/z"))


async def test_gzip_decoded_with_stdlib_matches() -> None:
    # The decoder yields bounded pieces whose concatenation is the original.
    data = b"abc" * 100000
    decoder = fetch._Decoder("gzip")
    out = b"".join(decoder.feed(gzip.compress(data))) + b"".join(decoder.flush())
    assert out == data
