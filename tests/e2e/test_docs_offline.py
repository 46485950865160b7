"""`/docs` works without the internet: the real API process serves Swagger UI's files
itself, and headless Chromium, which can reach nothing but this machine, renders every
operation of `/openapi.json`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from nexus.config import Settings
from tests.conftest import make_settings
from tests.support.browser import dump_dom
from tests.support.processes import Child, start_api
from tests.support.running import running
from tests.support.services import free_port

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture
async def api_settings(db_url: str) -> Settings:
    # No broker: the docs need none (the API only reports it in /ready).
    return make_settings(database_url=db_url, kafka_bootstrap="127.0.0.1:1", api_port=free_port())


@pytest_asyncio.fixture
async def api(api_settings: Settings, logs_dir: Path) -> AsyncIterator[Child]:
    async with running(start_api(api_settings, logs_dir)) as child:
        yield child


async def test_swagger_ui_lists_every_operation_without_the_internet(
    api_settings: Settings, api: Child
) -> None:
    base = f"http://127.0.0.1:{api_settings.api_port}"
    async with httpx.AsyncClient(timeout=10) as client:
        doc = (await client.get(f"{base}/openapi.json")).json()
    expected = {
        (method.upper(), path)
        for path, operations in doc["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert ("GET", "/health") in expected and ("POST", "/media/from_url") in expected

    dom = await dump_dom(f"{base}/docs", budget_ms=15000)

    (title,) = dom.xpath('//*[contains(@class, "swagger-ui")]//h1[contains(@class, "title")]')
    assert title.text_content().startswith("Nexus API")
    shown = {
        (
            block.xpath('string(.//*[contains(@class, "opblock-summary-method")])').strip(),
            block.xpath('string(.//*[contains(@class, "opblock-summary-path")]/@data-path)'),
        )
        for block in dom.xpath('//div[contains(concat(" ", @class, " "), " opblock ")]')
    }
    assert shown == expected
