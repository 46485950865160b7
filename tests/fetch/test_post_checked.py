"""`post_checked` (webhook deliveries): the fetcher's address rules, checked and pinned."""

from __future__ import annotations

import ipaddress

import pytest

from nexus.errors import TerminalError
from nexus.fetching.fetch import FetchPolicy, IPAddress, post_checked
from nexus.webhooks import signing
from tests.support.webhook_receiver import Receiver

SECRET = "whsec_" + "Zq8" * 12


def _resolver(answer: str):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(answer)]

    return resolve


def _signed(body: bytes) -> dict[str, str]:
    return {signing.SIGNATURE_HEADER: signing.sign(SECRET, body), "X-Nexus-Event-Id": "e1"}


async def test_a_name_is_resolved_once_and_the_checked_address_is_the_one_connected(
    connects: list[tuple[str, int]],
) -> None:
    body = b'{"message_id":"e1","event":"t"}'
    with Receiver(SECRET) as receiver:
        port = int(receiver.url.split(":")[2].split("/")[0])
        result = await post_checked(
            f"http://hooks.nexus-test.invalid:{port}/hook",
            body,
            {**_signed(body), "X-Nexus-Event-Type": "t"},
            policy=FetchPolicy(allow_hosts=("127.0.0.1",), timeout=5),
            resolver=_resolver("127.0.0.1"),
        )
    assert result.status == 204 and receiver.received == ["e1"]
    assert connects == [("127.0.0.1", port)]


async def _refused(url: str, *, resolving_to: str) -> str:
    """The code post_checked refuses an empty POST to `url` with, its host resolving so."""
    with pytest.raises(TerminalError) as refused:
        await post_checked(
            url, b"{}", {}, policy=FetchPolicy(timeout=5), resolver=_resolver(resolving_to)
        )
    return refused.value.code


@pytest.mark.parametrize("answer", ["127.0.0.1", "10.0.0.8", "169.254.169.254", "::1"])
async def test_a_name_resolving_to_a_private_address_is_blocked_before_connecting(
    answer: str, connects: list[tuple[str, int]]
) -> None:
    code = await _refused("https://hooks.nexus-test.invalid/hook", resolving_to=answer)
    assert code == "E_SSRF_BLOCKED" and connects == []


async def test_a_port_outside_the_allowed_ones_is_blocked(
    connects: list[tuple[str, int]],
) -> None:
    code = await _refused(
        "https://hooks.nexus-test.invalid:8443/hook", resolving_to="93.184.216.34"
    )
    assert code == "E_SSRF_BLOCKED" and connects == []
