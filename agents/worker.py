"""The Faust worker class of the agents (`app.conf.Worker`): SIGTERM drains first.

The first SIGTERM starts the drain (agents/lifecycle.py) and stops the worker when it is
done; a second SIGTERM, or SIGINT, stops at once (Faust's own behaviour).
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust

from agents import lifecycle


class NexusWorker(faust.Worker):
    _drain_task: asyncio.Future[None] | None = None

    def _on_sigterm(self) -> None:
        app: Any = self.app
        if self._drain_task is not None or getattr(app, "nexus", None) is None:
            super()._on_sigterm()
            return
        self._drain_task = asyncio.ensure_future(self._drain_then_stop(app))

    async def _drain_then_stop(self, app: Any) -> None:
        try:
            await lifecycle.drain(app.nexus, app)
        finally:
            super()._on_sigterm()
