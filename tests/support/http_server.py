"""A threaded HTTP server on 127.0.0.1 for one test, answering from Python: a subclass
says what a GET or POST gets (`on_get`, `on_post`). `with` starts it; leaving stops it."""

from __future__ import annotations

import threading
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

# (status, headers, body); Content-Length is added.
Answer = tuple[int, dict[str, str], bytes]


class LocalHttpServer:
    def __init__(self, port: int = 0) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer(owner.on_get)

            def do_POST(self) -> None:
                self._answer(owner.on_post)

            def _answer(self, respond: Any) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, headers, reply = respond(self.path, self.headers, body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def on_get(self, path: str, headers: Message, body: bytes) -> Answer:
        return 405, {}, b""

    def on_post(self, path: str, headers: Message, body: bytes) -> Answer:
        return 405, {}, b""

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._thread.join(timeout=5)

    def stop(self) -> None:
        """Stop answering (a test may do it early, as an outage); again is harmless."""
        self._server.shutdown()
        self._server.server_close()
