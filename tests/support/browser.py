"""Load a page in headless Chromium (Debian's `chromium`) and return its DOM.

The browser runs the page's scripts for a virtual time budget (timers fire at once; time
stops while a network request is pending), then prints the DOM as it is. It is offline
apart from this machine's loopback: every other host name resolves to nothing, so a page
that still reached for a CDN would lose that asset. A fresh profile per call.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile

from lxml import html

CHROMIUM = "chromium"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


def chromium_binary() -> str:
    found = shutil.which(CHROMIUM)
    if found is None:
        raise RuntimeError("chromium is not installed (scripts/install.sh installs it)")
    return found


async def dump_dom(url: str, *, budget_ms: int = 8000, timeout_s: float = 90.0) -> html.HtmlElement:
    """The DOM of `url` after `budget_ms` of virtual time, parsed by lxml."""
    with tempfile.TemporaryDirectory(prefix="nexus-chromium-") as profile:
        proc = await asyncio.create_subprocess_exec(
            chromium_binary(),
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
    if proc.returncode != 0 or not out.strip():
        tail = err.decode(errors="replace")[-2000:]
        raise RuntimeError(f"chromium exited {proc.returncode} without a DOM: {tail}")
    return html.document_fromstring(out)
