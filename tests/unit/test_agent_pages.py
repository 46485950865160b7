"""The agents' HTML pages: self-contained, and nothing from the database becomes markup."""

from __future__ import annotations

import json
import re

from lxml import html

from agents.pages import dashboard_html, timeline_html


def test_the_dashboard_loads_nothing_from_elsewhere() -> None:
    page = dashboard_html()
    doc = html.document_fromstring(page)
    assert not doc.xpath("//script[@src] | //link | //img | //iframe")
    urls = set(re.findall(r"https?://[^\s\"')]+", page))
    assert urls == {"http://www.w3.org/2000/svg"}  # the SVG namespace, never fetched
    assert set(re.findall(r'getJSON\("([^"]+)"\)', page)) == {"/nexus/stats", "/nexus/jobs/failed"}


def test_the_timeline_escapes_every_value() -> None:
    evil = '<script>alert("x")</script>'
    page = timeline_html(
        {
            "job_type": "ingest",
            "key": {"media_id": evil},
            "job": {"status": "failed", "last_error_message": evil},
            "data": [
                {"kind": "job_event", "at": "t1", "to_status": "failed", "error_message": evil},
                {"kind": "outbox", "at": "t2", "topic": "p.events", "payload": {"title": evil}},
            ],
        }
    )
    doc = html.document_fromstring(page)
    assert not doc.xpath("//script")
    assert doc.xpath('string(//table[@id="job-events"]//td[7])') == evil
    payload = doc.xpath('string(//table[@id="outbox"]//pre)')
    assert json.loads(payload) == {"title": evil}  # shown as JSON text, not markup
    assert doc.xpath('string(//table[@id="job"]//tr[2]/td)') == evil
