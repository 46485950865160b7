"""The Faust worker class of the agents (`app.conf.Worker`): SIGTERM drains first, and
Faust logs through the process's one logging set-up.

The first SIGTERM starts the drain (agents/lifecycle.py) and stops the worker when it is
done; a second SIGTERM, or SIGINT, stops at once (Faust's own behaviour).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust

from agents import lifecycle
from runtime.logs import configure_logging


class NexusWorker(faust.Worker):
    _drain_task: asyncio.Future[None] | None = None

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        """mode replaces the root logger's handlers with its own (text on stdout) when the
        worker starts; this hook runs right after and puts ours back, so Faust's, mode's
        and aiokafka's lines go through the process's one set-up, printed once."""
        self.spinner = None
        ctx = self.app.nexus  # type: ignore[attr-defined]
        configure_logging(ctx.settings, fields={"worker_id": ctx.worker_id})

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
