"""The extraction pool: real worker processes, their limits, and how failures come back."""

from __future__ import annotations

import asyncio
import fcntl
import os
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nexus.errors import TerminalError, TransientError
from nexus.extraction import pool as extractors
from nexus.extraction.pool import ExtractionPool

PAGES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "article-pages"


# Module-level so the spawned processes can import them.
def _spin(seconds: float) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "done"


def _die() -> None:
    os._exit(7)


def _hog() -> int:
    return len(bytearray(512 * 1024 * 1024))


def _terminal() -> None:
    raise TerminalError("E_PDF_ENCRYPTED", "locked")


def _transient() -> None:
    raise TransientError("E_FETCH_FAILED", "try later")


def _bug() -> None:
    raise KeyError("ours")


def _pid() -> int:
    return os.getpid()


def _pipe_sizes() -> list[int]:
    """Sizes of the pipes the pool process holds (its task and result channels)."""
    sizes = []
    for name in os.listdir("/proc/self/fd"):
        try:
            fd = int(name)
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                sizes.append(fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ))
        except OSError:
            continue
    return sizes


@pytest.fixture
async def pool() -> AsyncIterator[ExtractionPool]:
    p = ExtractionPool(processes=1, timeout_seconds=2.0, memory_mb=400)
    await p.warm_up()
    try:
        yield p
    finally:
        p.close()


async def test_a_page_is_extracted_in_another_process(pool: ExtractionPool) -> None:
    page = sorted(PAGES.iterdir())[0]
    html = (page / "source.html").read_text(encoding="utf-8", errors="replace")
    title, rows = await pool.run(extractors.article, html, "https://example.com/a")
    assert rows and all(text for _, _, text in rows)
    assert [idx for idx, _, _ in rows] == list(range(len(rows)))
    assert await pool.run(_pid) != os.getpid()
    assert title == extractors.article(html, "https://example.com/a")[0]


async def test_the_channels_hold_a_whole_page(pool: ExtractionPool) -> None:
    # Task and result pipes hold a typical page, so a process does not wait for the busy
    # agents process to drain them between two documents.
    sizes = await pool.run(_pipe_sizes)
    assert len([s for s in sizes if s >= extractors._PIPE_BYTES]) >= 2, sizes


async def test_domain_errors_keep_their_code_and_kind(pool: ExtractionPool) -> None:
    with pytest.raises(TerminalError) as terminal:
        await pool.run(_terminal)
    assert (terminal.value.code, terminal.value.message) == ("E_PDF_ENCRYPTED", "locked")
    with pytest.raises(TransientError) as transient:
        await pool.run(_transient)
    assert transient.value.code == "E_FETCH_FAILED"
    with pytest.raises(TransientError) as bug:  # unexpected: retried, like before the pool
        await pool.run(_bug)
    assert (bug.value.code, bug.value.message) == (
        "E_INTERNAL",
        "unexpected KeyError in extraction",
    )


async def test_a_document_over_time_is_killed_and_the_pool_carries_on(
    pool: ExtractionPool,
) -> None:
    before = await pool.run(_pid)
    with pytest.raises(TerminalError) as err:
        await pool.run(_spin, 30)
    assert err.value.code == "E_EXTRACTION_FAILED" and "longer than 2 s" in err.value.message
    assert await pool.run(_spin, 0) == "done"
    assert await pool.run(_pid) != before  # the stuck process was replaced


async def test_a_crashed_process_is_a_transient_failure(pool: ExtractionPool) -> None:
    with pytest.raises(TransientError) as err:
        await pool.run(_die)
    assert err.value.code == "E_EXTRACTION_FAILED" and "exit code 7" in err.value.message
    assert await pool.run(_spin, 0) == "done"


async def test_memory_is_capped_per_process(pool: ExtractionPool) -> None:
    with pytest.raises(TerminalError) as err:
        await pool.run(_hog)
    assert err.value.code == "E_EXTRACTION_FAILED" and "memory" in err.value.message
    assert await pool.run(_spin, 0) == "done"


async def test_documents_queue_behind_each_other_without_eating_their_time(
    pool: ExtractionPool,
) -> None:
    """Three 0.9 s documents on one process take 2.7 s in all, yet none times out (2 s):
    a document's limit starts when a process picks it up."""
    results = await asyncio.gather(*(pool.run(_spin, 0.9) for _ in range(3)))
    assert results == ["done"] * 3
