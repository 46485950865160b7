"""HTML for people on the agents' web port: the dashboard and one job's timeline.

Both are self-contained (no CDN, no build step): the dashboard is one static file with
its own small SVG charts in inline JavaScript, reading `/nexus/stats` and
`/nexus/jobs/failed`; the timeline is rendered here with every value escaped.
"""

from __future__ import annotations

import functools
import json
from html import escape
from importlib import resources
from typing import Any


@functools.cache
def dashboard_html() -> str:
    return resources.files("agents").joinpath("dashboard.html").read_text(encoding="utf-8")


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d2733}
h1{font-size:1.2rem;overflow-wrap:anywhere}h2{font-size:1.05rem}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #dde3ea;
padding:.3rem .5rem;text-align:left;vertical-align:top}th{background:#f3f6f9}
code,pre{font:12px ui-monospace,monospace}pre{margin:0;white-space:pre-wrap}
.failed{color:#b3261e}.completed{color:#1e7b34}
"""

_EVENT_COLUMNS = ("at", "from_status", "to_status", "attempt", "actor", "error_code",
                  "error_message", "correlation_id")  # fmt: skip
_OUTBOX_COLUMNS = ("at", "topic", "key", "published_at", "publish_attempts", "last_error",
                   "parked_at")  # fmt: skip


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return f"<pre>{escape(json.dumps(value, indent=1, sort_keys=True))}</pre>"
    return escape(str(value))


def _table(css_id: str, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        f'<tr class="{escape(str(r.get("to_status") or ""))}">'
        + "".join(f"<td>{_cell(r.get(c))}</td>" for c in columns)
        + "</tr>"
        for r in rows
    )
    return f'<table id="{css_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def timeline_html(timeline: dict[str, Any]) -> str:
    """The page of `views.job_timeline`'s answer: the job now, its transitions, its
    messages (with their payloads)."""
    job = timeline["job"] or {}
    events = [e for e in timeline["data"] if e["kind"] == "job_event"]
    messages = [e for e in timeline["data"] if e["kind"] == "outbox"]
    key = ", ".join(f"{k}={v}" for k, v in timeline["key"].items())
    title = f"{timeline['job_type']} job {key}"
    summary = "".join(f"<tr><th>{escape(k)}</th><td>{_cell(v)}</td></tr>" for k, v in job.items())
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f'<p><a href="/nexus/dashboard">&larr; dashboard</a></p>'
        f"<h1>{escape(title)}</h1>"
        f'<h2>Now</h2><table id="job">{summary or "<tr><td>row gone</td></tr>"}</table>'
        f"<h2>Transitions (job_events)</h2>{_table('job-events', _EVENT_COLUMNS, events)}"
        f"<h2>Messages (outbox)</h2>"
        f"{_table('outbox', (*_OUTBOX_COLUMNS, 'payload'), messages)}"
        "</body></html>"
    )
