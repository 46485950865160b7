"""The seam between Nexus and the Kafka client: processes provide an implementation."""

from __future__ import annotations

from typing import Protocol


class PublishError(Exception):
    """The broker did not acknowledge a message (down, timed out, rejected)."""


class MessageRejected(PublishError):
    """The broker (or the client, on the broker's rules) refused this message itself: too
    large, an invalid or unauthorised topic. Sending the same bytes again fails again,
    unlike a broker that is down or slow (a plain `PublishError`)."""


class Publisher(Protocol):
    async def publish(
        self, topic: str, key: str | None, value: bytes, headers: dict[str, str]
    ) -> None:
        """Send one message and wait for the broker's acknowledgement.

        Raises `PublishError` when the message is not acknowledged in time.
        """
        ...

    async def ping(self) -> bool:
        """True when the broker answers (used by readiness checks)."""
        ...
