"""SSRF-hardened HTTP fetcher for web ingestion (SPEC §8; rules in docs/fetching.md).

Guarantees of `fetch_url`:

- Every hop (the first URL and each redirect target) is normalised, its host name
  resolved once, and *every* resolved address classified with
  `nexus.fetching.urls.is_public_address`; one non-public address blocks the hop
  (`E_SSRF_BLOCKED`). Ports other than `FetchPolicy.allowed_ports` are blocked too.
- The TCP connection goes to an address that was checked: httpcore's network backend is
  replaced by `_PinnedBackend`, which maps (host, port) to the checked addresses and refuses
  any other host. TLS still uses the URL's host name for SNI and certificate checks (httpcore
  passes the origin host to `start_tls`), and the `Host` header is the URL's. A DNS answer
  that changes between check and connect (rebinding) is therefore never used.
- Environment proxies are ignored (`trust_env=False`): a proxy would connect on our behalf.
- Redirects are followed by hand, at most `max_redirects` (5), each re-checked.
- One deadline (`timeout`, 30 s) covers DNS, connects, redirects and the whole body
  (`E_FETCH_TIMEOUT`, transient).
- The decoded body is capped while streaming (`max_bytes`, 10 MiB, `E_FETCH_TOO_LARGE`);
  compressed bodies are inflated in bounded pieces, so a zip bomb cannot grow memory.
- Only HTML (`web_article`) and PDF (`pdf`, by content type or `%PDF-` magic) are
  accepted; anything else is `E_UNSUPPORTED_CONTENT`, decided from the first bytes.
- The body is returned as bytes with the charset the server declared: decoding a page is
  CPU work that depends on what the page says, so it happens in the extraction processes
  under their time limit (`nexus.extraction.pool.web_page`), never on the event loop.

`NEXUS_FETCH_ALLOW_HOSTS` (`FetchPolicy.allow_hosts`) exempts listed host names, IPs or
CIDR networks from the address block and the port rule; nothing else bypasses the checks.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urljoin

import httpcore
import httpx

from nexus.errors import TerminalError, TransientError
from nexus.extraction import filetypes
from nexus.extraction.filetypes import parse_content_type
from nexus.fetching.urls import (
    Host,
    InvalidUrl,
    IPAddress,
    host_or_ip_allowed,
    is_local_name,
    is_public_address,
    normalise_url,
    parse_host,
    parse_url,
)

FetchKind = Literal["web_article", "pdf"]
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
PDF_TYPES = frozenset({"application/pdf", "application/x-pdf"})
_SNIFFABLE_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_SNIFF_BYTES = filetypes.PDF_HEADER_WINDOW
_INFLATE_PIECE = 64 * 1024


@dataclass(frozen=True)
class FetchPolicy:
    allow_hosts: tuple[str, ...] = ()
    allowed_ports: frozenset[int] = frozenset({80, 443})
    max_redirects: int = 5
    max_bytes: int = 10 * 1024 * 1024
    timeout: float = 30.0
    user_agent: str = "NexusBot/1.0 (+https://nexus.invalid/bot; reading app)"

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> FetchPolicy:
        """Policy from `Settings`: `fetch_allow_hosts`, `fetch_allowed_ports` when set and
        `fetch_timeout_seconds`."""
        ports = settings.fetch_allowed_ports or (80, 443)
        values: dict[str, Any] = {
            "allow_hosts": tuple(settings.fetch_allow_hosts),
            "allowed_ports": frozenset(int(p) for p in ports),
            "timeout": float(getattr(settings, "fetch_timeout_seconds", cls.timeout)),
        }
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class FetchResult:
    final_url: str  # normalised URL of the last hop (the one that answered 2xx)
    status: int
    content_type: str  # media type without parameters, lower case ("" when absent)
    kind: FetchKind
    body: bytes
    charset: str | None  # the Content-Type charset label as sent (unchecked), or None
    redirects: tuple[str, ...] = field(default=())  # URLs that answered with a redirect


@dataclass(frozen=True)
class _Target:
    url: str
    host: Host
    port: int
    addresses: tuple[IPAddress, ...]


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """All addresses the system resolver returns for `host` (the loop's getaddrinfo).

    Tests monkeypatch this function; the fetcher looks it up at call time.
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    seen: dict[str, IPAddress] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]  # drop an IPv6 zone id
        seen.setdefault(address, ipaddress.ip_address(address))
    return list(seen.values())


# --- connection pinning -----------------------------------------------------------------


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses the fetcher checked for that (host, port)."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._pins: dict[tuple[str, int], tuple[IPAddress, ...]] = {}

    def pin(self, host: str, port: int, addresses: Iterable[IPAddress]) -> None:
        self._pins[(host, port)] = tuple(addresses)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            key = (parse_host(f"[{host}]" if ":" in host else host).name, port)
        except InvalidUrl:
            raise httpcore.ConnectError(f"refusing to connect to {host!r}") from None
        addresses = self._pins.get(key)
        if not addresses:
            raise httpcore.ConnectError(f"no checked address for {host}:{port}")
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport (exception mapping, streaming) over a pool using `_PinnedBackend`.

    httpx does not take a network backend, so the pool it builds is replaced by an
    identical httpcore pool with ours. `tests/unit/test_fetch.py::test_connects_to_checked_
    address_not_a_second_lookup` fails if a future httpx stops using `_pool`.
    """

    def __init__(self, backend: _PinnedBackend) -> None:
        context = _ssl_context()
        super().__init__(verify=context, trust_env=False, retries=0)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=4,
            http1=True,
            http2=False,
            retries=0,
            network_backend=backend,
        )


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One verifying TLS context per process. Building one loads the CA bundle (~15 ms of
    CPU on the event loop); a fresh client per fetch made that the ingest worker's largest
    cost (docs/ingestion.md, figures)."""
    return httpx.create_ssl_context(trust_env=False)


# --- the fetch --------------------------------------------------------------------------


async def fetch_url(
    url: str, *, policy: FetchPolicy | None = None, resolver: Resolver | None = None
) -> FetchResult:
    """Fetch `url` under `policy`. See the module docstring for the guarantees.

    Raises `TerminalError` (`E_SSRF_BLOCKED`, `E_FETCH_FAILED` for 404/410/other 4xx, bad
    redirects or more than `max_redirects`, `E_FETCH_TOO_LARGE`, `E_UNSUPPORTED_CONTENT`)
    or `TransientError` (`E_FETCH_TIMEOUT`; `E_FETCH_FAILED` for 5xx, 408, 429, DNS
    temporary failures and connection errors).
    """
    policy = policy or FetchPolicy()
    try:
        async with asyncio.timeout(policy.timeout):
            return await _fetch(url, policy, resolver or resolve_host)
    except TimeoutError:
        raise TransientError(
            "E_FETCH_TIMEOUT", f"no complete answer in {policy.timeout:g} s"
        ) from None
    except httpx.TimeoutException as exc:
        raise TransientError("E_FETCH_TIMEOUT", f"timed out: {type(exc).__name__}") from None
    except httpx.DecodingError:
        raise TerminalError("E_FETCH_FAILED", "the response body could not be decoded") from None
    except httpx.TransportError as exc:
        raise TransientError("E_FETCH_FAILED", f"connection failed: {type(exc).__name__}") from None


async def _fetch(url: str, policy: FetchPolicy, resolver: Resolver) -> FetchResult:
    backend = _PinnedBackend()
    headers = {
        "User-Agent": policy.user_agent,
        "Accept": "text/html,application/xhtml+xml,application/pdf;q=0.9,*/*;q=0.1",
        "Accept-Encoding": "gzip, deflate",
    }
    redirects: list[str] = []
    async with httpx.AsyncClient(
        transport=_PinnedTransport(backend),
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(policy.timeout),
        headers=headers,
    ) as client:
        current = url
        for _hop in range(policy.max_redirects + 1):
            target = await _check_target(current, policy, resolver, first=not redirects)
            backend.pin(target.host.name, target.port, target.addresses)
            response = await client.send(client.build_request("GET", target.url), stream=True)
            try:
                location = _redirect_location(response)
                if location is None:
                    _raise_for_status(response)
                    return await _read(response, target.url, tuple(redirects), policy)
            finally:
                await response.aclose()
            redirects.append(target.url)
            current = urljoin(target.url, location)
    raise TerminalError("E_FETCH_FAILED", f"more than {policy.max_redirects} redirects")


async def _check_target(
    url: str, policy: FetchPolicy, resolver: Resolver, *, first: bool
) -> _Target:
    try:
        parsed = parse_url(url)
        normalised = normalise_url(url)
    except InvalidUrl as exc:
        where = "URL" if first else "redirect target"
        raise TerminalError("E_FETCH_FAILED", f"invalid {where}: {exc.message}") from None
    host = parsed.host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    allowed_name = host_or_ip_allowed(host.name, host.ip, policy.allow_hosts)
    if host.ip is None and is_local_name(host.name) and not allowed_name:
        raise TerminalError("E_SSRF_BLOCKED", f"{host.name} is a local host name")
    addresses = (host.ip,) if host.ip is not None else await _resolve(host.name, port, resolver)
    if not allowed_name:
        for address in addresses:
            if not is_public_address(address) and not host_or_ip_allowed(
                None, address, policy.allow_hosts
            ):
                raise TerminalError(
                    "E_SSRF_BLOCKED", f"{host.name} resolves to a non-public address"
                )
    exempt = allowed_name or all(host_or_ip_allowed(None, a, policy.allow_hosts) for a in addresses)
    if port not in policy.allowed_ports and not exempt:
        raise TerminalError("E_SSRF_BLOCKED", f"port {port} is not allowed")
    return _Target(normalised, host, port, addresses)


async def _resolve(name: str, port: int, resolver: Resolver) -> tuple[IPAddress, ...]:
    try:
        addresses = tuple(await resolver(name, port))
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_AGAIN, getattr(socket, "EAI_SYSTEM", None)):
            raise TransientError("E_FETCH_FAILED", f"DNS lookup of {name} failed") from None
        raise TerminalError("E_FETCH_FAILED", f"{name} does not resolve") from None
    if not addresses:
        raise TerminalError("E_FETCH_FAILED", f"{name} does not resolve")
    return addresses


def _redirect_location(response: httpx.Response) -> str | None:
    if response.status_code not in _REDIRECTS:
        return None
    location = response.headers.get("location", "").strip()
    if not location:
        raise TerminalError("E_FETCH_FAILED", f"HTTP {response.status_code} without Location")
    return location


def _raise_for_status(response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    message = f"HTTP {status}"
    if status >= 500 or status in (408, 429):
        raise TransientError("E_FETCH_FAILED", message)
    raise TerminalError("E_FETCH_FAILED", message)


async def _read(
    response: httpx.Response, url: str, redirects: tuple[str, ...], policy: FetchPolicy
) -> FetchResult:
    content_type, charset = parse_content_type(response.headers.get("content-type", ""))
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > policy.max_bytes:
        raise _too_large(policy)
    decoder = _Decoder(response.headers.get("content-encoding", ""))
    body = bytearray()
    kind: FetchKind | None = _kind_by_type(content_type)
    async for chunk in response.aiter_raw():
        for piece in decoder.feed(chunk):
            body += piece
            if len(body) > policy.max_bytes:
                raise _too_large(policy)
        if kind is None and len(body) >= _SNIFF_BYTES:
            kind = _sniff_kind(bytes(body), content_type)
    for piece in decoder.flush():
        body += piece
        if len(body) > policy.max_bytes:
            raise _too_large(policy)
    data = bytes(body)
    if kind is None:
        kind = _sniff_kind(data, content_type)
    elif kind == "web_article" and filetypes.is_pdf(data[:_SNIFF_BYTES]):
        kind = "pdf"  # the bytes say PDF whatever the header says
    if kind == "pdf":
        return FetchResult(url, response.status_code, content_type, "pdf", data, None, redirects)
    return FetchResult(url, response.status_code, content_type, kind, data, charset, redirects)


def _too_large(policy: FetchPolicy) -> TerminalError:
    return TerminalError("E_FETCH_TOO_LARGE", f"the body exceeds {policy.max_bytes} bytes")


def _kind_by_type(content_type: str) -> FetchKind | None:
    if content_type in HTML_TYPES:
        return "web_article"
    if content_type in PDF_TYPES:
        return "pdf"
    return None


def _sniff_kind(head: bytes, content_type: str) -> FetchKind:
    """Kind of a body whose type header is neither HTML nor PDF; raises when unsupported."""
    if filetypes.is_pdf(head):
        return "pdf"
    if content_type == "" and _looks_like_html(head):
        return "web_article"
    shown = content_type or "no content type"
    raise TerminalError("E_UNSUPPORTED_CONTENT", f"unsupported content: {shown}")


def _looks_like_html(head: bytes) -> bool:
    start = head[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return start.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


class _Decoder:
    """Content-Encoding decoding in bounded pieces (at most 64 KiB per piece)."""

    def __init__(self, encoding: str) -> None:
        codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
            raise TerminalError("E_UNSUPPORTED_CONTENT", f"unsupported content encoding {encoding}")
        self._coding = codings[0] if codings else None
        wbits = 47 if self._coding in ("gzip", "x-gzip") else 15
        self._inflater = zlib.decompressobj(wbits) if self._coding else None
        self._first = True

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        if self._inflater is None:
            if chunk:
                yield chunk
            return
        data = chunk
        while data:
            try:
                piece = self._inflater.decompress(data, _INFLATE_PIECE)
            except zlib.error:
                if self._coding == "deflate" and self._first:
                    self._inflater = zlib.decompressobj(-15)  # raw deflate, no zlib header
                    self._first = False
                    continue
                raise TerminalError("E_FETCH_FAILED", "corrupt compressed body") from None
            self._first = False
            if piece:
                yield piece
            data = self._inflater.unconsumed_tail

    def flush(self) -> Iterator[bytes]:
        if self._inflater is not None:
            tail = self._inflater.flush()
            if tail:
                yield tail


# --- one checked POST (webhook deliveries) -----------------------------------------------


@dataclass(frozen=True)
class PostResult:
    status: int
    headers: dict[str, str]


async def post_checked(
    url: str,
    content: bytes,
    headers: dict[str, str],
    *,
    policy: FetchPolicy,
    resolver: Resolver | None = None,
) -> PostResult:
    """POST `content` to `url` once, under the fetcher's address rules: the host is checked
    and the connection pinned to the checked addresses exactly as in `fetch_url`; redirects
    are not followed (a 3xx is returned as is); the response body is discarded.

    Raises `TerminalError` (`E_SSRF_BLOCKED`; `E_FETCH_FAILED` for an invalid URL or a name
    that does not resolve) or `TransientError` (`E_FETCH_TIMEOUT`; `E_FETCH_FAILED` for
    connection errors and temporary DNS failures).
    """
    run_resolver = resolver or resolve_host
    try:
        async with asyncio.timeout(policy.timeout):
            target = await _check_target(url, policy, run_resolver, first=True)
            backend = _PinnedBackend()
            backend.pin(target.host.name, target.port, target.addresses)
            async with httpx.AsyncClient(
                transport=_PinnedTransport(backend),
                follow_redirects=False,
                trust_env=False,
                timeout=httpx.Timeout(policy.timeout),
                headers={"User-Agent": policy.user_agent},
            ) as client:
                request = client.build_request("POST", url, content=content, headers=headers)
                # Streamed and closed unread: a receiver's body is never loaded.
                response = await client.send(request, stream=True)
                await response.aclose()
                return PostResult(response.status_code, dict(response.headers))
    except TimeoutError:
        raise TransientError("E_FETCH_TIMEOUT", f"no answer in {policy.timeout:g} s") from None
    except httpx.TimeoutException as exc:
        raise TransientError("E_FETCH_TIMEOUT", f"timed out: {type(exc).__name__}") from None
    except httpx.HTTPError as exc:
        raise TransientError("E_FETCH_FAILED", f"connection failed: {type(exc).__name__}") from None
