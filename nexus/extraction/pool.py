"""Document extraction in worker processes, with a hard time and memory limit per document.

Decoding and parsing a page, a PDF or an EPUB is CPU-bound Python (lxml, pypdf, our
scorer). Run on the agents' event loop, or in threads of it, it holds the GIL: the loop
stalls (consumer heartbeats, lease renewals and fetches wait), and threads fighting over
the GIL double the CPU cost per page (measured: 25 ms alone, 55 ms with four threads); and
how long decoding takes is up to the page (its declared charset). A separate process
avoids both, and it is also a fence around hostile files: a document that loops is killed
when its time is up (`NEXUS_INGEST_EXTRACT_TIMEOUT_SECONDS`, terminal
`E_EXTRACTION_FAILED`), one that needs more than `NEXUS_INGEST_EXTRACT_MEMORY_MB` fails
with `MemoryError` in its own process (terminal), and one that crashes its process is
retried like any transient failure.

`pebble` runs the pool: it replaces a worker that timed out or died, which
`concurrent.futures` cannot do on Python 3.11. Processes are started with `spawn` (the
agents process runs threads; forking it is unsafe) and recycled every
`_TASKS_PER_PROCESS` documents to bound memory growth from fragmented heaps.
"""

from __future__ import annotations

import asyncio
import fcntl
import multiprocessing
import os
import resource
import signal
import stat
import traceback
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from pebble import ProcessExpired, ProcessPool

from nexus.errors import NexusError, TerminalError, TransientError
from nexus.extraction.article import extract_article, split_fragments
from nexus.extraction.documents import DocumentResult
from nexus.extraction.epub import extract_epub
from nexus.extraction.filetypes import decode_html
from nexus.extraction.pdf import extract_pdf
from nexus.extraction.sanitize import sanitize_html
from nexus.extraction.text import canonical_text
from nexus.jobs.worker import classify

T = TypeVar("T")
FragmentRows = list[tuple[int, str, str]]

_TASKS_PER_PROCESS = 1000
_FAILED = "E_EXTRACTION_FAILED"


def article(html: str, url: str) -> tuple[str | None, FragmentRows]:
    """Title and (idx, sanitised html, canonical text) rows of a web page."""
    found = extract_article(html, url)
    rows = [
        (f.idx, f.html_sanitized, f.canonical_text) for f in split_fragments(found.content_html)
    ]
    return found.title, rows


def web_page(
    body: bytes, declared_charset: str | None, url: str
) -> tuple[str | None, FragmentRows]:
    """`article` of a fetched page's bytes, decoded here (WHATWG labels only, see
    `filetypes.decode_html`): decoding is work the page controls, so it runs under the
    pool's time limit and off the agents' event loop."""
    html, _encoding = decode_html(body, declared_charset)
    return article(html, url)


def pdf(data: bytes) -> DocumentResult:
    return extract_pdf(data, canonical_text=canonical_text)


def epub(data: bytes) -> DocumentResult:
    return extract_epub(data, sanitize_html, canonical_text)


def _in_child(fn: Callable[..., T], *args: Any) -> tuple[str, Any]:
    """Runs in the pool process. Domain errors travel back as data: pickle rebuilds an
    exception from its `args`, which our error classes do not keep in constructor order."""
    try:
        return "ok", fn(*args)
    except (TerminalError, TransientError, NexusError) as exc:
        terminal, code, message = classify(exc)
        return "error", (code, message, terminal)
    except MemoryError:
        return "error", (_FAILED, "the document needs more memory than extraction may use", True)
    except RecursionError:
        return "error", (_FAILED, "the document is nested too deeply to extract", True)
    except Exception as exc:
        # A bug of ours, not the document's fault as far as we know: retried like any
        # unexpected error. The traceback goes to the worker's log (inherited stderr).
        traceback.print_exc()
        return "error", ("E_INTERNAL", f"unexpected {type(exc).__name__} in extraction", False)


# Documents go to the process and results come back through pipes. With the kernel's
# default 64 KiB a page (~150 KiB) or its fragments do not fit, so the process sits
# blocked in `write` until the busy agents process gets round to reading: measured, the
# median idle gap between two documents halved with 1 MiB (the unprivileged maximum).
_PIPE_BYTES = 1024 * 1024


def _enlarge_pipes(size: int) -> None:
    """Grow every pipe this process holds (pebble's task and result channels) to `size`."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is None:  # not Linux
        return
    for name in os.listdir("/proc/self/fd"):
        try:
            fd = int(name)
            # Not stdin/stdout/stderr: they may be a pipe of someone else's (`| tee`).
            if fd > 2 and stat.S_ISFIFO(os.fstat(fd).st_mode):
                fcntl.fcntl(fd, set_size, size)
        except (OSError, ValueError):
            continue  # closed meanwhile, or over the user's pipe quota: keep the default


def _init_child(memory_mb: int | None, setup: Callable[[], None] | None = None) -> None:
    # The agents process decides when to stop; a Ctrl-C in its terminal must not
    # interrupt a document half-way in the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if setup is not None:
        setup()
    _enlarge_pipes(_PIPE_BYTES)
    if memory_mb:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _ready() -> bool:
    return True


class ExtractionPool:
    """`await pool.run(article, html, url)`: the call runs in a pool process.

    Raises `TerminalError`/`TransientError` as the extractor did, `TerminalError
    (E_EXTRACTION_FAILED)` on timeout or memory exhaustion, and `TransientError
    (E_EXTRACTION_FAILED)` when the process died under it (another document may have
    taken it down; a retry tells).
    """

    def __init__(
        self,
        *,
        processes: int,
        timeout_seconds: float,
        memory_mb: int | None = None,
        child_setup: Callable[[], None] | None = None,
    ) -> None:
        """`child_setup` (picklable) runs first in each new process: the owner's logging
        set-up, so what extractors log (pypdf warns about damaged files) is formatted like
        the rest of its output instead of Python's bare last-resort text."""
        self.processes = processes
        self.timeout_seconds = timeout_seconds
        self._pool = ProcessPool(
            max_workers=processes,
            max_tasks=_TASKS_PER_PROCESS,
            initializer=_init_child,
            initargs=(memory_mb, child_setup),
            context=multiprocessing.get_context("spawn"),
        )

    async def warm_up(self) -> None:
        """Start every process and import the extractors before the first document."""
        await asyncio.gather(
            *(asyncio.wrap_future(self._pool.schedule(_ready)) for _ in range(self.processes))
        )

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        # Documents queue in pebble (its time limit starts when a process picks one up), so
        # a process finishing one finds the next waiting instead of idling until this
        # busy event loop gets round to handing it over.
        future = self._pool.schedule(_in_child, (fn, *args), timeout=self.timeout_seconds)
        try:
            status, value = await asyncio.wrap_future(future)
        except FutureTimeout:
            raise TerminalError(
                _FAILED, f"extraction took longer than {self.timeout_seconds:g} s"
            ) from None
        except ProcessExpired as exc:
            raise TransientError(
                _FAILED, f"the extraction process died (exit code {exc.exitcode})"
            ) from None
        except asyncio.CancelledError:
            future.cancel()  # pebble drops it, or stops the process working on it
            raise
        if status == "ok":
            result: T = value
            return result
        code, message, terminal = value
        raise (TerminalError if terminal else TransientError)(code, message)

    def close(self) -> None:
        """Stop the processes now (a document in progress is abandoned; its job is
        re-delivered by the lease machinery)."""
        self._pool.stop()
        self._pool.join(timeout=10)
