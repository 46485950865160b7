"""The one logging set-up of every process (api, agents, cli): structlog over stdlib logging.

Guarantees (SPEC §10, field list in docs/operations.md):

- One handler on the root logger writes every record, ours and the libraries' (Faust,
  mode, aiokafka, Hypercorn, asyncio, warnings), to stderr. With `NEXUS_LOG_JSON=true`
  each record is exactly one JSON line with `timestamp`, `level`, `logger` and `event`,
  plus the bound context (`request_id`, `correlation_id`, `job_type`, `job_key`,
  `attempt`, ...), the current OpenTelemetry `trace_id`/`span_id` when a span is
  recording, and the process fields given to `configure_logging` (`worker_id`).
- `extra=` fields of stdlib calls are kept as fields; an exception is rendered as text
  in `exception` (never a repr of the traceback object).
- Calling it again replaces our handler (no duplicate lines) and leaves other handlers
  (pytest's capture) alone. Libraries that install their own stream handler are made to
  propagate to ours instead: Hypercorn through `web.serving`, Faust through
  `agents.app.NexusWorker`, which call this instead of their own set-up.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog
from opentelemetry import trace

from nexus.config import Settings

_HANDLER_NAME = "nexus-structlog"
# httpx logs every request at INFO; the ingest worker logs its own outcomes, and one line
# per fetch is noise (and measurable CPU at hundreds of pages a second).
_QUIET_LOGGERS = ("httpx", "httpcore")


def _add_trace_ids(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """`trace_id`/`span_id` of the span current where the line was logged (if recording)."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event


def _static_fields(fields: Mapping[str, str]) -> structlog.types.Processor:
    def add(
        _logger: Any, _method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in fields.items():
            event.setdefault(key, value)
        return event

    return add


def configure_logging(
    settings: Settings,
    *,
    fields: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
) -> None:
    """Install the process's log handler on the root logger (see the module docstring).

    `fields` are added to every line (e.g. the agents' `worker_id`); `stream` defaults to
    the current `sys.stderr`."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        _add_trace_ids,
    ]
    if fields:
        shared.append(_static_fields(dict(fields)))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    # ConsoleRenderer formats exceptions itself (and warns if they were formatted before).
    rendering: list[structlog.types.Processor] = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if settings.log_json
        else [
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            )
        ]
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        # ExtraAdder first: a field passed with `extra=` wins over the bound context.
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == _HANDLER_NAME or _is_plain_stderr(existing):
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for noisy in _QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Warnings become log lines (JSON too) instead of raw text on stderr.
    logging.captureWarnings(True)


def _is_plain_stderr(handler: logging.Handler) -> bool:
    """A console handler someone else left on the root logger (basicConfig, Faust's
    colorlog): it would print every line a second time, as text."""
    stream = getattr(handler, "stream", None)
    return type(handler).__name__ == "StreamHandler" or stream in (sys.__stderr__, sys.__stdout__)
