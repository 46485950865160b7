"""API read benchmark: the BFF's hottest reads against a bare Quart endpoint returning the
same JSON, same server configuration, same run.

Reads: `GET /me`, `GET /libraries`, `GET /libraries/{default}/media?limit=50`, `GET
/media/{id}`, `GET /media/{id}/fragments` (50 fragments), as a real BFF calls them: the
internal header, a real HS256 JWT, one known user whose default library holds 60 media.
Each read is loaded for BENCH_API_SECONDS (default 8) against the API and as long against
the baseline (bench/_bare_api.py: Quart under Hypercorn with the API's config and worker
count, answering each path with the body the API gave, parsed and re-serialised per
request), in BENCH_API_ROUNDS (default 3) alternating API/baseline phases, each after a
1 s warm-up, with BENCH_API_CONNECTIONS (default 32) requests in flight from an aiohttp
client in this process. Alternating keeps a drift of the machine's speed during the run
(seen as ±20 % between minutes on a shared 2-core host) from falling on one side only.
Ratios: API req/s over bare req/s (goal ≥ 0.6) and API p99 over bare p99 (goal ≤ 2).
The API is then started with 2 workers and measured again.

PostgreSQL backends of the API (`application_name = 'nexus'` on the bench database) are
counted after the warm-up and after the steady state, and backends started during the
steady state are counted too (goal: 0 opened).

Everything is started here and torn down after (a fresh database, a broker the API can
warm up against, the API and the bare app as Hypercorn subprocesses). Prints ONE JSON
object. Run: `python bench/api.py` (~3 min on 2 cores).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for `bench` and `tests`

import aiohttp
import asyncpg
import jwt

from bench._common import ROOT, Stack, analyze, stack
from nexus.config import Settings
from tests.support.processes import (
    Child,
    settings_env,
    spawn,
    start_api,
    wait_http,
)
from tests.support.services import free_port

SECONDS = float(os.environ.get("BENCH_API_SECONDS", "8"))
WARMUP = 1.0
# Each read's steady state is split into this many API/bare phase pairs, alternated.
ROUNDS = int(os.environ.get("BENCH_API_ROUNDS", "3"))
CONNECTIONS = int(os.environ.get("BENCH_API_CONNECTIONS", "32"))
# BENCH_API_PROFILE=<dir>: py-spy (installed separately) samples the server's worker during
# each phase and writes <dir>/<read>.txt and <dir>/<read>.bare.txt (collapsed stacks).
PROFILE_DIR = os.environ.get("BENCH_API_PROFILE")
# BENCH_API_READS=me,media: only these reads (and the 2-worker phase only with
# library_media), for quicker comparisons while working on one read.
READS = [r for r in os.environ.get("BENCH_API_READS", "").split(",") if r]
MEDIA = 60
FRAGMENTS = 60


def token(settings: Settings, user_id: uuid.UUID) -> str:
    assert settings.jwt_hs256_secret is not None
    now = datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audiences[0],
        "iat": now,
        "exp": now + timedelta(hours=2),
    }
    return jwt.encode(claims, settings.jwt_hs256_secret.get_secret_value(), algorithm="HS256")


async def seed(dsn: str, library_id: uuid.UUID, user_id: uuid.UUID) -> uuid.UUID:
    """MEDIA ready web articles in the user's default library (intrinsics, so readable);
    FRAGMENTS fragments on each, as every extracted article has (with fragments on one
    media only, each row's `has_text` probe scanned the whole small fragments table: a cost
    of this data set, not of the API). Returns the first media's id."""
    conn = await asyncpg.connect(dsn)
    try:
        ids = [uuid.uuid4() for _ in range(MEDIA)]
        async with conn.transaction():
            await conn.executemany(
                "INSERT INTO media (id, kind, title, canonical_source_url, processing_status,"
                " created_by_user_id) VALUES ($1, 'web_article', $2, $3, 'ready_for_reading', $4)",
                [
                    (m, f"Article number {i} about reading", f"https://example.org/a/{i}", user_id)
                    for i, m in enumerate(ids)
                ],
            )
            await conn.executemany(
                "INSERT INTO default_library_intrinsics (default_library_id, media_id) "
                "VALUES ($1, $2)",
                [(library_id, m) for m in ids],
            )
            await conn.executemany(
                "INSERT INTO library_media (library_id, media_id) VALUES ($1, $2)",
                [(library_id, m) for m in ids],
            )
            text = "A paragraph of the article, long enough to look like real prose. " * 6
            await conn.executemany(
                "INSERT INTO fragments (media_id, idx, canonical_text, html_sanitized) "
                "VALUES ($1, $2, $3, $4)",
                [(m, i, text, f"<p>{text}</p>") for m in ids for i in range(FRAGMENTS)],
            )
        return ids[0]
    finally:
        await conn.close()


async def backend_pids(dsn: str, db: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'nexus'",
            db,
        )
        return [int(r["pid"]) for r in rows]
    finally:
        await conn.close()


async def backends(dsn: str, db: str, since: datetime | None = None) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        sql = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
            "AND application_name = 'nexus'"
        )
        if since is None:
            return int(await conn.fetchval(sql, db))
        return int(await conn.fetchval(sql + " AND backend_start >= $2", db, since))
    finally:
        await conn.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def process_tree(pid: int) -> list[int]:
    """`pid` and its children (Hypercorn's master and its workers)."""
    children = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    return [pid, *(int(c) for c in children)]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


Watch = Callable[[], Awaitable[dict[str, list[int]]]]


def watching(server: Child) -> Watch:
    async def watch() -> dict[str, list[int]]:
        return {"server": process_tree(server.proc.pid)}

    return watch


@dataclass
class Sample:
    """One steady-state phase of the load against one server."""

    latencies: list[float]
    elapsed: float
    errors: int
    client_cpu: float
    cpu: dict[str, float]  # CPU seconds used by each watched group of processes


async def load(
    url: str, headers: dict[str, str], seconds: float, watch: Watch | None = None
) -> Sample:
    """CONNECTIONS loops of sequential GETs for `seconds` (after the warm-up).

    The CPU seconds of this process (the load generator) and of each group of processes
    `watch()` names after the warm-up (the server's, the API's PostgreSQL backends) are
    taken over the steady state only."""
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=CONNECTIONS, force_close=False)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
        stop_warm = time.perf_counter() + WARMUP

        async def loop(until: float, record: bool) -> None:
            nonlocal errors
            while (started := time.perf_counter()) < until:
                async with http.get(url) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                if record:
                    latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(loop(stop_warm, False) for _ in range(CONNECTIONS)))
        watched = await watch() if watch is not None else {}
        cpu_before = {name: cpu_seconds(pids) for name, pids in watched.items()}
        client_before = time.process_time()
        began = time.perf_counter()
        await asyncio.gather(*(loop(began + seconds, True) for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - began
        client = time.process_time() - client_before
        used = {name: cpu_seconds(pids) - cpu_before[name] for name, pids in watched.items()}
    return Sample(latencies, elapsed, errors, client, used)


def summarise(samples: list[Sample]) -> dict[str, Any]:
    """The phases of one server together: req/s over their summed time, percentiles over
    all their latencies. `client_cpu` and `<name>_cpu` are shares of one core: near 1.0
    for the client means the generator, not the server, set the pace."""
    latencies = [v for s in samples for v in s.latencies]
    elapsed = sum(s.elapsed for s in samples)
    groups = {name for s in samples for name in s.cpu}
    return {
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "errors": sum(s.errors for s in samples),
        "client_cpu": round(sum(s.client_cpu for s in samples) / elapsed, 2),
        **{
            f"{name}_cpu": round(sum(s.cpu.get(name, 0.0) for s in samples) / elapsed, 2)
            for name in sorted(groups)
        },
        "rounds_rps": [round(len(s.latencies) / s.elapsed, 1) for s in samples],
    }


def profile(server: Child, name: str) -> subprocess.Popen[bytes] | None:
    """py-spy on the server's (one) worker process for the read (warm-ups included; stopped
    with SIGINT when the read ends)."""
    if not PROFILE_DIR:
        return None
    workers = subprocess.run(
        ["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    target = workers[-1] if workers else str(server.proc.pid)
    out = Path(PROFILE_DIR) / f"{name}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).parent / "py-spy")
    argv = [spy, "record", "--pid", target, "--format", "raw", "--output", str(out)]
    # The whole read: its phases on both servers, warm-ups included.
    duration = int(2 * (SECONDS + ROUNDS * WARMUP)) + 1
    argv += ["--duration", str(duration), "--rate", "200", "--nonblocking"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def start_bare(settings: Settings, fixtures: Path, logs: Path, workers: int) -> Child:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "hypercorn",
        "bench._bare_api:app",
        "--config",
        "python:web.serving.hypercorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
    ]
    env = settings_env(settings, BENCH_BARE_FIXTURES=str(fixtures))
    env["PYTHONPATH"] = str(ROOT)
    child = spawn(f"bare{workers}", argv, env, logs)
    child.port = port  # type: ignore[attr-defined]
    await wait_http(child, f"http://127.0.0.1:{port}/health")
    return child


async def run(s: Stack) -> dict[str, Any]:
    db = s.settings.database_url.rsplit("/", 1)[1]
    settings = s.settings.model_copy(update={"api_workers": 1})
    api = await start_api(settings, s.logs, name="api1")
    base = f"http://127.0.0.1:{settings.api_port}"
    user_id = uuid.uuid4()
    assert settings.internal_secret is not None
    headers = {
        "Authorization": f"Bearer {token(settings, user_id)}",
        "X-Nexus-Internal": settings.internal_secret.get_secret_value(),
    }
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(base + "/me") as response:
            me = (await response.json())["data"]
    library_id = uuid.UUID(me["default_library_id"])
    media_id = await seed(s.dsn, library_id, user_id)
    await analyze(s.dsn)
    paths = {
        "me": "/me",
        "libraries": "/libraries",
        "library_media": f"/libraries/{library_id}/media?limit=50",
        "media": f"/media/{media_id}",
        "fragments": f"/media/{media_id}/fragments",
    }
    fixtures: dict[str, Any] = {}
    async with aiohttp.ClientSession(headers=headers) as http:
        for path in paths.values():
            async with http.get(base + path) as response:
                assert response.status == 200, (path, response.status, await response.text())
                fixtures[path.split("?")[0]] = await response.json()
    fixture_file = s.logs / "bare-fixtures.json"
    fixture_file.write_text(json.dumps(fixtures))
    assert len(fixtures["/libraries/" + str(library_id) + "/media"]["data"]) == 50

    results: dict[str, Any] = {"reads": {}, "workers_2": {}}
    if READS:
        paths = {name: path for name, path in paths.items() if name in READS}
    bare = await start_bare(settings, fixture_file, s.logs, 1)
    bare_base = f"http://127.0.0.1:{bare.port}"  # type: ignore[attr-defined]
    try:
        for name, path in paths.items():
            before = await backends(s.dsn, db)
            since = datetime.now(UTC) + timedelta(seconds=WARMUP)
            spies = [profile(api, name), profile(bare, f"{name}.bare")]

            async def watch_api() -> dict[str, list[int]]:
                pids = await backend_pids(s.dsn, db)
                return {"server": process_tree(api.proc.pid), "db": pids}

            # API and bare phases alternate: a drift of the machine's speed (other
            # tenants of the host, the CPU's clock) falls on both sides alike.
            api_samples: list[Sample] = []
            bare_samples: list[Sample] = []
            for _ in range(ROUNDS):
                api_samples.append(await load(base + path, headers, SECONDS / ROUNDS, watch_api))
                bare_samples.append(
                    await load(bare_base + path, {}, SECONDS / ROUNDS, watching(bare))
                )
            for spy in spies:
                if spy is not None:
                    spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
                    spy.wait()
            opened = await backends(s.dsn, db, since)
            after = await backends(s.dsn, db)
            api_stats, bare_stats = summarise(api_samples), summarise(bare_samples)
            results["reads"][name] = {
                "api": api_stats,
                "bare": bare_stats,
                "rps_ratio": round(api_stats["rps"] / bare_stats["rps"], 3),
                "p99_ratio": round(api_stats["p99_ms"] / bare_stats["p99_ms"], 3),
                "backends_before": before,
                "backends_after": after,
                "backends_opened_in_steady_state": opened,
            }
    finally:
        bare.stop()
        api.stop()

    reads = results["reads"]
    if "library_media" in paths:
        results["workers_2"] = await two_workers(s, paths["library_media"], fixture_file, headers)
        one = reads["library_media"]["api"]
        results["workers_2"]["library_media"]["api_rps_2_over_1"] = round(
            results["workers_2"]["library_media"]["api"]["rps"] / one["rps"], 3
        )
    results["goals_met"] = all(
        r["rps_ratio"] >= 0.6 and r["p99_ratio"] <= 2 and r["backends_opened_in_steady_state"] == 0
        for r in reads.values()
    )
    results["seconds_per_read"] = SECONDS
    results["rounds"] = ROUNDS
    results["connections"] = CONNECTIONS
    results["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return results


async def two_workers(
    s: Stack, path: str, fixture_file: Path, headers: dict[str, str]
) -> dict[str, Any]:
    """The API and the bare app again with 2 workers, the list read only (the heaviest)."""
    settings2 = s.settings.model_copy(update={"api_workers": 2, "api_port": free_port()})
    api2 = await start_api(settings2, s.logs, name="api2")
    bare2 = await start_bare(settings2, fixture_file, s.logs, 2)
    try:
        two: list[Sample] = []
        bare_two: list[Sample] = []
        for _ in range(ROUNDS):
            two.append(
                await load(
                    f"http://127.0.0.1:{settings2.api_port}{path}",
                    headers,
                    SECONDS / ROUNDS,
                    watching(api2),
                )
            )
            bare_two.append(
                await load(
                    f"http://127.0.0.1:{bare2.port}{path}",  # type: ignore[attr-defined]
                    {},
                    SECONDS / ROUNDS,
                    watching(bare2),
                )
            )
        return {"library_media": {"api": summarise(two), "bare": summarise(bare_two)}}
    finally:
        bare2.stop()
        api2.stop()


async def main() -> None:
    started = time.perf_counter()
    async with stack(log_level="WARNING") as s:
        results = await run(s)
    results["bench_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
