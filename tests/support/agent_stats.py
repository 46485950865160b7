"""The agents' own HTTP view of themselves (`/nexus/stats`), as tests read it."""

from __future__ import annotations

from typing import Any

import httpx

from nexus.config import Settings


def agents_base(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.agents_web_port}"


async def stats(settings: Settings) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        resp = await client.get(f"{agents_base(settings)}/nexus/stats")
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def counters(settings: Settings) -> dict[str, int]:
    return dict((await stats(settings))["counters"])
