"""A real webhook receiver for tests: an HTTP server on 127.0.0.1 (its own thread) that
checks every request with the reference verification (`nexus.webhooks.signing.verify`).

A request with a bad signature is answered 401 and counted in `rejected`; a valid one is
recorded by event id (receivers dedupe by `X-Nexus-Event-Id`) unless `fail_first` requests
are still to be failed (answered 503, with `Retry-After` when `retry_after` is set).
"""

from __future__ import annotations

import json
import threading
from email.message import Message
from typing import Any

from nexus.webhooks import signing
from tests.support.http_server import Answer, LocalHttpServer


class Receiver(LocalHttpServer):
    def __init__(self, secret: str, *, fail_first: int = 0, retry_after: str | None = None) -> None:
        super().__init__()
        self.secret = secret
        self.fail_first = fail_first
        self.retry_after = retry_after
        self.requests = 0
        self.rejected = 0
        self.events: dict[str, dict[str, Any]] = {}
        self.received: list[str] = []  # every accepted event id, duplicates included
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"{self.base_url}/hook"

    def on_post(self, path: str, headers: Message, body: bytes) -> Answer:
        status, extra = self._handle(body, dict(headers.items()))
        return status, extra, b""

    def _handle(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        with self._lock:
            self.requests += 1
            if not signing.verify(self.secret, body, headers.get(signing.SIGNATURE_HEADER)):
                self.rejected += 1
                return 401, {}
            if self.fail_first > 0:
                self.fail_first -= 1
                return 503, ({"Retry-After": self.retry_after} if self.retry_after else {})
            event = json.loads(body)
            event_id = headers.get(signing.EVENT_ID_HEADER, "")
            assert event_id == event["message_id"]
            assert headers.get(signing.EVENT_TYPE_HEADER) == event["event"]
            self.events[event_id] = event
            self.received.append(event_id)
            return 204, {}
