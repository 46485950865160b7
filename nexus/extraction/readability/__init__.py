"""A reader-view extractor on lxml, after the Readability family of heuristics.

`parse(html, url)` finds the main content of a web page and its metadata. It is a pure,
deterministic function: no network, no globals mutated. The scorer gives each paragraph
points (length, commas) and passes them up to its ancestors, weighs class names and ids,
discounts link-heavy nodes, then keeps the best node and its article-like siblings and
cleans out what still looks like clutter. When that yields under 500 characters it tries
again with fewer filters and keeps the longest result.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from urllib.parse import urljoin

import lxml.html
from lxml import etree
from lxml.html import HtmlElement

from nexus.extraction.readability import clean, dom, grab, metadata, prep

__all__ = ["Readable", "parse"]

CHAR_THRESHOLD = 500
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>", re.I)
# Characters libxml2 trees cannot hold (C0 controls except tab/newline/CR, lone surrogates,
# non-characters); browsers would not show them either.
_NOT_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class Readable:
    """What a reader view keeps of a page. `content` is a detached <div>, not yet sanitised."""

    title: str | None
    byline: str | None
    excerpt: str | None
    site_name: str | None
    published_time: str | None
    base_url: str
    content: HtmlElement


def parse_document(html: str) -> HtmlElement:
    """Parse to a full document tree (comments dropped); never raises on junk input."""
    html = _NOT_XML_CHARS.sub("", _XML_DECL.sub("", html))
    parser = lxml.html.HTMLParser(remove_comments=True, remove_pis=True)
    try:
        doc = lxml.html.document_fromstring(html or "<html></html>", parser=parser)
    except (etree.ParserError, ValueError):
        doc = lxml.html.document_fromstring("<html><body></body></html>", parser=parser)
    if doc.find("body") is None:
        doc.append(lxml.html.Element("body"))
    return doc


def base_url(doc: HtmlElement, url: str) -> str:
    base = next((b.get("href") for b in doc.iter("base") if b.get("href")), None)
    return urljoin(url, base.strip()) if base else url


def _attempt(state: grab.Pass, body: HtmlElement) -> HtmlElement:
    elements = grab.collect_elements(state, body)
    candidates = grab.score_elements(state, elements)
    top, _created = grab.pick_top(state, body, candidates)
    article = grab.merge_siblings(state, top)
    clean.prepare_article(state, article)
    return article


def _grab_article(body: HtmlElement, title: str) -> tuple[HtmlElement, str | None]:
    # (strip unlikely candidates, weigh class names, clean conditionally), relaxed in turn.
    flags = [(True, True, True), (False, True, True), (False, False, True), (False, False, False)]
    attempts: list[tuple[int, HtmlElement, str | None]] = []
    for i, (strip, weigh, clean_more) in enumerate(flags):
        state = grab.Pass(
            title=title, strip_unlikely=strip, weight_classes=weigh, clean_conditionally=clean_more
        )
        work = body if i == len(flags) - 1 else copy.deepcopy(body)
        article = _attempt(state, work)
        length = len(dom.inner_text(article))
        if length >= CHAR_THRESHOLD:
            return article, state.byline
        attempts.append((length, article, state.byline))
    best = max(attempts, key=lambda a: a[0])
    return best[1], best[2]


def parse(html: str, url: str) -> Readable:
    doc = parse_document(html)
    found = metadata.from_jsonld(doc)
    prep.prepare(doc)
    meta = metadata.collect(doc, found)
    body = doc.find("body")
    assert body is not None  # parse_document guarantees one
    article, byline = _grab_article(body, meta.title or "")
    return Readable(
        title=meta.title,
        byline=meta.byline or byline,
        excerpt=meta.excerpt,
        site_name=meta.site_name,
        published_time=meta.published_time,
        base_url=base_url(doc, url),
        content=article,
    )
