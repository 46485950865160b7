"""The webhook signature (reference verification) and the retry policy (pure)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx

from nexus.webhooks import policy, signing
from tests.support.webhook_receiver import Receiver

SECRET = "whsec_" + "k3Y" * 12
BODY = b'{"message_id":"5d3c","event":"media.ready"}'


def test_a_signature_verifies_with_the_secret_and_the_exact_body() -> None:
    header = signing.sign(SECRET, BODY, timestamp=1_700_000_000)
    t, v1 = header.split(",")
    assert t == "t=1700000000" and v1.startswith("v1=") and len(v1) == 3 + 64
    assert signing.verify(SECRET, BODY, header, now=1_700_000_010)


def test_tampering_with_body_mac_timestamp_or_secret_is_rejected() -> None:
    header = signing.sign(SECRET, BODY, timestamp=1_700_000_000)
    now = 1_700_000_000
    assert not signing.verify(SECRET, BODY + b" ", header, now=now)
    assert not signing.verify(SECRET, BODY.replace(b"ready", b"faile"), header, now=now)
    flipped = header[:-1] + ("0" if header[-1] != "0" else "1")
    assert not signing.verify(SECRET, BODY, flipped, now=now)
    assert not signing.verify(SECRET, BODY, header.replace("t=1700000000", "t=1700000001"), now=now)
    assert not signing.verify(SECRET + "x", BODY, header, now=now)


def test_stale_or_malformed_headers_are_not_valid() -> None:
    header = signing.sign(SECRET, BODY, timestamp=1_700_000_000)
    assert not signing.verify(SECRET, BODY, header, now=1_700_000_000 + 301)
    for bad in (None, "", "v1=abc", "t=1700000000", "t=x,v1=abc", "garbage", "t=1,t=2,v1=a"):
        assert not signing.verify(SECRET, BODY, bad, now=1_700_000_000)


def test_the_receiver_rejects_a_tampered_request_and_accepts_a_signed_one() -> None:
    with Receiver(SECRET) as receiver:
        body = b'{"message_id":"e1","event":"media.ready"}'
        good = signing.sign(SECRET, body)
        base = {"X-Nexus-Event-Id": "e1", "X-Nexus-Event-Type": "media.ready"}
        tampered = httpx.post(
            receiver.url,
            content=body.replace(b"ready", b"fails"),
            headers={**base, "X-Nexus-Signature": good},
        )
        forged = httpx.post(
            receiver.url,
            content=body,
            headers={**base, "X-Nexus-Signature": signing.sign("other-secret", body)},
        )
        ok = httpx.post(receiver.url, content=body, headers={**base, "X-Nexus-Signature": good})
    assert (tampered.status_code, forged.status_code, ok.status_code) == (401, 401, 204)
    assert receiver.rejected == 2 and receiver.received == ["e1"]


def test_answers_map_to_delivered_retry_or_dead() -> None:
    assert policy.from_status(200, {}).kind == "delivered"
    assert policy.from_status(204, {}).kind == "delivered"
    for status in (500, 502, 503, 429, 408):
        assert policy.from_status(status, {}).kind == "retry"
    for status in (301, 400, 401, 404, 410):
        assert policy.from_status(status, {}).kind == "dead"


def test_retry_after_in_seconds_or_as_an_http_date_is_honoured() -> None:
    assert policy.from_status(429, {"Retry-After": "120"}).retry_after == 120
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    date = (now + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert policy.parse_retry_after(date, now=now) == 90
    assert policy.parse_retry_after("yesterday-ish") is None
    backoff = policy.Backoff(max_attempts=12, base_seconds=60, max_seconds=28800)
    assert backoff.delay(1, retry_after=120) == 120
    assert backoff.delay(1, retry_after=10**9) == 28800  # a receiver cannot park us forever


def test_default_schedule_spreads_twelve_attempts_over_about_a_day() -> None:
    backoff = policy.Backoff(max_attempts=12, base_seconds=60, max_seconds=28800)
    waits = [backoff.delay(n) for n in range(1, 12)]  # between the 12 attempts
    assert waits[:3] == [60, 120, 240] and waits[-1] == 28800
    assert 20 * 3600 < sum(waits) < 28 * 3600
    last = policy.Outcome("retry", 503, "HTTP 503")
    assert policy.final(last, 11, backoff).kind == "retry"
    assert policy.final(last, 12, backoff).kind == "dead"


def test_signing_uses_the_current_time_by_default() -> None:
    header = signing.sign(SECRET, BODY)
    assert abs(int(header.split(",")[0][2:]) - time.time()) < 5
    assert signing.verify(SECRET, BODY, header)
