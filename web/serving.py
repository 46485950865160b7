"""Hypercorn's configuration for `nexus api` (`hypercorn --config python:web.serving.hypercorn`).

Hypercorn gives its error logger a stream handler of its own that also propagates to the
root logger, so each of its lines was printed twice (once as plain text). Handing it a
logger object makes Hypercorn use it as is: its lines reach only the process's one
handler (`runtime.logs`), in JSON when configured. No access log: the API logs one
`http request` line per request itself. The workers run on uvloop: less of the worker's
CPU per socket event than asyncio's own loop (docs/performance.md).
"""

import logging
import types

# Only this object's attributes are read (Hypercorn's `Config.from_object`).
hypercorn = types.SimpleNamespace(
    errorlog=logging.getLogger("hypercorn.error"),
    accesslog=None,
    worker_class="uvloop",
)
