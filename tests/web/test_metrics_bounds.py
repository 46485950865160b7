"""Metrics cannot be blown up from outside (issue 11.3, SPEC §10): whatever method and
path a client sends, authenticated or not, the HTTP series keep bounded labels (method
in the standard set or `other`, route = URL rule template or `unmatched`)."""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families
from quart import Quart

from tests.support.webapp import Api
from web.metrics import METHODS, OTHER_METHOD, UNMATCHED_ROUTE

Series = frozenset[tuple[str, tuple[tuple[str, str], ...]]]


async def series(api: Api) -> Series:
    """Every (sample name, labels) the API exports now."""
    text = (await (await api.get("/metrics", internal=None)).get_data()).decode()
    return frozenset(
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    )


def garbage_method(rng: random.Random) -> str:
    size = rng.randint(1, 24)
    return "".join(rng.choice(string.ascii_letters) for _ in range(size))


# Kinds of path: a made-up one, a real template with random ids, an invalid id, a public one.
PATHS: list[Callable[[random.Random], str]] = [
    lambda rng: f"/{garbage_method(rng)}/{rng.randrange(10**12)}",
    lambda rng: f"/media/{uuid.UUID(int=rng.getrandbits(128), version=4)}",
    lambda rng: f"/media/{garbage_method(rng)}-x",
    lambda rng: "/health",
]


async def send(api: Api, method: str, path: str, internal: bool) -> None:
    kwargs = {} if internal else {"internal": None}
    await api.request(method, path, **kwargs)


async def test_random_methods_and_paths_add_no_series(api: Api, app: Quart) -> None:
    rng = random.Random(1103)
    # Every kind of request once: each normalised method, on each kind of path, with and
    # without the internal header (a refusal before authentication).
    for make_path in PATHS:
        for method in (*sorted(METHODS), "BREW"):
            for internal in (True, False):
                await send(api, method, make_path(rng), internal)
    await series(api)  # the scrape's own series exist from here on
    before = await series(api)

    for _ in range(1000):
        method = rng.choice([*METHODS, garbage_method(rng), garbage_method(rng).lower()])
        await send(api, method, rng.choice(PATHS)(rng), rng.random() < 0.5)
    after = await series(api)

    assert after == before, sorted(after - before)[:10]
    http = [dict(labels) for name, labels in after if name == "nexus_http_requests_total"]
    templates = {rule.rule for rule in app.url_map.iter_rules()}
    assert {h["method"] for h in http} <= METHODS | {OTHER_METHOD}
    assert {h["route"] for h in http} <= templates | {UNMATCHED_ROUTE}
    # The made-up methods were counted, under `other`.
    assert any(h["method"] == OTHER_METHOD for h in http)
    assert "/media/<uuid:media_id>" in {h["route"] for h in http}
