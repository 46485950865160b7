"""Schemathesis over the whole OpenAPI document against the real API process.

All operations, with valid credentials (user JWT + internal header; an admin operator key
for `/internal/*`; valid pre-signed tokens, see `schemathesis_hooks.py`), the coverage,
fuzzing and stateful phases, and the checks `not_a_server_error`,
`status_code_conformance`, `response_schema_conformance`, `content_type_conformance` and
our `error_code_is_declared`: any failure fails the test with schemathesis' report.
Examples are bounded so the run takes a few minutes on two cores; the seed is fixed so a
failure reproduces.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from nexus.config import Settings
from nexus.db.engine import make_engine, make_sessionmaker
from nexus.db.tx import transaction
from nexus.operators.service import create_key
from tests.conftest import TEST_INTERNAL_SECRET, make_settings
from tests.support.processes import start_api
from tests.support.running import running
from tests.support.services import Broker, free_port
from tests.support.webapp import make_token

pytestmark = pytest.mark.e2e

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "response_schema_conformance",
    "content_type_conformance",
    "error_code_is_declared",
)
MAX_EXAMPLES = int(os.environ.get("NEXUS_TEST_SCHEMATHESIS_EXAMPLES", "20"))
MAX_STEPS = 40
SEED = 15
ROOT = Path(__file__).resolve().parents[2]


@pytest_asyncio.fixture
async def api(
    db_url: str, broker: Broker, logs_dir: Path, tmp_path: Path
) -> AsyncIterator[Settings]:
    settings = make_settings(
        database_url=db_url,
        kafka_bootstrap=broker.bootstrap,
        api_port=free_port(),
        storage_dir=tmp_path / "storage",
        # The flows of the stateful phase save and upload far more than a person would.
        rate_limit_ingest_per_minute=100_000,
    )
    async with running(start_api(settings, logs_dir)):
        yield settings


async def _operator_key(settings: Settings) -> str:
    engine = make_engine(settings, pool_size=1)
    try:
        async with transaction(make_sessionmaker(engine)) as session:
            created = await create_key(session, name=f"st-{uuid.uuid4().hex[:6]}", role="admin")
        return created.token
    finally:
        await engine.dispose()


def _config(settings: Settings, operator_key: str) -> str:
    user = make_token(uuid.uuid4(), exp=int(time.time()) + 3600)
    base = f"http://127.0.0.1:{settings.api_port}"
    return "\n".join(
        [
            f"base-url = {json.dumps(base)}",
            "workers = 1",
            "request-timeout = 20",
            "max-stream-events = 1",
            f"seed = {SEED}",
            "[headers]",
            f'"X-Nexus-Internal" = {json.dumps(TEST_INTERNAL_SECRET)}',
            f'"Authorization" = {json.dumps("Bearer " + user)}',
            "[generation]",
            f"max-examples = {MAX_EXAMPLES}",
            'mode = "all"',
            "[phases.stateful]",
            f"max-steps = {MAX_STEPS}",
            "[[operations]]",
            'include-path-regex = "^/internal/"',
            f'headers = {{ "X-Nexus-Internal" = {json.dumps(TEST_INTERNAL_SECRET)}, '
            f'"Authorization" = {json.dumps("Bearer " + operator_key)} }}',
        ]
    )


@pytest.mark.timeout(900)
async def test_the_document_holds_for_every_operation(api: Settings, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(api, await _operator_key(api)))
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.contract.schemathesis_hooks",
        "NEXUS_TEST_SIGNING_KEY_HEX": api.upload_signing_key_bytes.hex(),
        "PYTHONPATH": str(ROOT),
        "NEXUS_TEST_ST_STATUS_LOG": str(tmp_path / "statuses.log"),
    }
    argv = [
        str(Path(sys.executable).parent / "st"),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"http://127.0.0.1:{api.api_port}/openapi.json",
        "--phases",
        "coverage,fuzzing,stateful",
        "--checks",
        ",".join(CHECKS),
    ]
    proc = await asyncio.to_thread(
        subprocess.run, argv, env=env, capture_output=True, text=True, timeout=840, cwd=tmp_path
    )
    report = proc.stdout[-20000:] + proc.stderr[-4000:]
    assert proc.returncode == 0, report
    # Valid credentials: every operation was answered past its credential checks at least
    # once (the internal header, the user JWT or operator key, the pre-signed token) and
    # past input validation (a 400 may come before the credentials are looked at).
    seen: dict[str, set[int]] = {}
    for line in (tmp_path / "statuses.log").read_text().splitlines():
        operation, status = line.split()
        seen.setdefault(operation, set()).add(int(status))
    blocked = {op: s for op, s in seen.items() if s <= {400, 401, 403}}
    assert blocked == {}, blocked
    assert len(seen) >= 40, sorted(seen)
