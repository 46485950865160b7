"""A tiny raw HTTP/1.1 server on 127.0.0.1 for fetcher tests (no framework, no internet).

Routes are coroutines `(writer, request) -> None` keyed by path; every request is recorded
(path, Host header) so tests can assert what reached the server and what did not.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

PDF_BYTES = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
PAGE = b"<!doctype html><html><head><title>Hello</title></head><body><p>Hi</p></body></html>"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


Handler = Callable[[asyncio.StreamWriter, Request], Awaitable[None]]


@dataclass
class LocalServer:
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    bytes_sent: dict[str, int] = field(default_factory=dict)
    routes: dict[str, Handler] = field(default_factory=dict)
    _server: asyncio.Server | None = None

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                self.requests.append(request)
                handler = self.routes.get(request.path, not_found)
                await handler(writer, request)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def serving(routes: Mapping[str, Handler] | None = None) -> AsyncIterator[LocalServer]:
    """A started server with `routes` (more may be added once its URL is known), stopped
    when the block ends."""
    server = LocalServer(routes=dict(routes or {}))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    line = await reader.readline()
    if not line:
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        h = (await reader.readline()).decode("latin-1").rstrip("\r\n")
        if not h:
            break
        k, _, v = h.partition(":")
        headers[k.strip().lower()] = v.strip()
    parts = urlsplit(target)
    return Request(method, parts.path, parse_qs(parts.query), headers)


def head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def respond(status: int, body: bytes, content_type: str | None, **extra: str) -> Handler:
    async def handler(writer: asyncio.StreamWriter, request: Request) -> None:
        headers = {"Content-Length": str(len(body))}
        if content_type is not None:
            headers["Content-Type"] = content_type
        headers.update({k.replace("_", "-"): v for k, v in extra.items()})
        writer.write(head(status, headers) + body)

    return handler


async def not_found(writer: asyncio.StreamWriter, request: Request) -> None:
    await respond(404, b"nope", "text/plain")(writer, request)


def redirect(location: str, status: int = 302) -> Handler:
    return respond(status, b"", "text/html", Location=location)


def gzipped(body: bytes, content_type: str = "text/html; charset=utf-8") -> Handler:
    data = gzip.compress(body)
    return respond(200, data, content_type, Content_Encoding="gzip")


def endless(server: LocalServer, key: str, chunk: bytes, delay: float = 0.0) -> Handler:
    """Headers, then `chunk` forever (chunked encoding), counting what was sent."""

    async def handler(writer: asyncio.StreamWriter, request: Request) -> None:
        writer.write(head(200, {"Content-Type": "text/html", "Transfer-Encoding": "chunked"}))
        server.bytes_sent[key] = 0
        while True:
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            await writer.drain()
            server.bytes_sent[key] += len(chunk)
            await asyncio.sleep(delay)

    return handler


def slow_headers(delay: float) -> Handler:
    async def handler(writer: asyncio.StreamWriter, request: Request) -> None:
        await asyncio.sleep(delay)
        await respond(200, PAGE, "text/html")(writer, request)

    return handler
