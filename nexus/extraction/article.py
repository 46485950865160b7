"""Web article extraction: HTML page in, sanitised article and its reading fragments out.

`extract_article(html, url)` is pure and deterministic (no I/O). It finds the main content
with the reader-view scorer in `nexus.extraction.readability`, sanitises it
(`nexus.extraction.sanitize`: allow-list, absolute links against the page URL or `<base href>`)
and derives the canonical text (`nexus.extraction.text`). `split_fragments(content_html)` cuts
the sanitised content into the fragments stored for reading, on block boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass

import lxml.html
from lxml.html import HtmlElement

from nexus.errors import TerminalError
from nexus.extraction import readability
from nexus.extraction.readability.dom import Appender
from nexus.extraction.sanitize import sanitize_html
from nexus.extraction.text import BLOCK_TAGS, canonical_text, element_text

__all__ = [
    "FRAGMENT_TEXT_LIMIT",
    "Article",
    "ExtractionEmpty",
    "Fragment",
    "extract_article",
    "split_fragments",
]

# A fragment closes once its text reaches this many characters; a single block larger than
# this is never cut and forms a fragment on its own.
FRAGMENT_TEXT_LIMIT = 8000
# Wrappers that may be opened to reach the blocks they hold when they are too big to keep.
_CONTAINERS = frozenset({"div", "section", "article", "main", "body", "html"})


class ExtractionEmpty(TerminalError):
    """The page has no readable text; the pipeline records terminal `E_EXTRACTION_EMPTY`."""

    def __init__(self, message: str = "no readable text found in the page") -> None:
        super().__init__("E_EXTRACTION_EMPTY", message)


@dataclass(frozen=True)
class Fragment:
    idx: int
    html_sanitized: str
    canonical_text: str


@dataclass(frozen=True)
class Article:
    """The readable part of a page. `content_html` is sanitised; `text` is its canonical text."""

    title: str | None
    byline: str | None
    content_html: str
    text: str
    excerpt: str | None = None
    site_name: str | None = None
    published_time: str | None = None

    def fragments(self) -> list[Fragment]:
        return split_fragments(self.content_html)


def _clean_meta(value: str | None) -> str | None:
    if value is None:
        return None
    value = " ".join(value.split())
    return value or None


def extract_article(html: str, url: str) -> Article:
    """Extract the article of page `html` fetched from `url` (the base for relative links).

    Raises `ExtractionEmpty` when nothing readable remains after extraction and sanitising.
    """
    found = readability.parse(html, url)
    raw = lxml.html.tostring(found.content, encoding="unicode")
    content_html = sanitize_html(raw, found.base_url).strip()
    text = canonical_text(content_html)
    if not text:
        raise ExtractionEmpty()
    return Article(
        title=_clean_meta(found.title),
        byline=_clean_meta(found.byline),
        content_html=content_html,
        text=text,
        excerpt=_clean_meta(found.excerpt),
        site_name=_clean_meta(found.site_name),
        published_time=_clean_meta(found.published_time),
    )


def _serialize(el: HtmlElement) -> str:
    tail, el.tail = el.tail, None
    try:
        return lxml.html.tostring(el, encoding="unicode")
    finally:
        el.tail = tail


def _is_block(el: HtmlElement) -> bool:
    return el.tag in BLOCK_TAGS or el.tag == "pre"


class _Blocks:
    """Collects (html, text) blocks; consecutive inline content is gathered into one <p>."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, str]] = []
        self.run: HtmlElement | None = None
        self.run_end: Appender | None = None

    def inline(self, item: HtmlElement | str | None) -> None:
        if item is None or (isinstance(item, str) and not item.strip() and self.run is None):
            return
        if self.run is None:
            self.run = lxml.html.Element("p")
            self.run_end = Appender(self.run)
        assert self.run_end is not None
        if isinstance(item, str):
            self.run_end.text(item)
        else:
            tail, item.tail = item.tail, None
            self.run_end.element(item)
            self.run_end.text(tail)

    def close_run(self) -> None:
        if self.run is not None:
            self.blocks.append((_serialize(self.run), element_text(self.run)))
            self.run = self.run_end = None

    def block(self, el: HtmlElement) -> None:
        self.close_run()
        self.blocks.append((_serialize(el), element_text(el)))


def _collect_blocks(root: HtmlElement, out: _Blocks) -> None:
    """Top-level blocks of `root`, opening wrappers that are trivial or exceed the limit."""
    out.inline(root.text)
    for child in list(root):
        tail = child.tail
        if not isinstance(child.tag, str):
            pass
        elif child.tag in _CONTAINERS and _should_open(child):
            out.close_run()
            _collect_blocks(child, out)
            out.close_run()
        elif child.tag in ("ul", "ol") and len(child.text_content()) > FRAGMENT_TEXT_LIMIT:
            out.close_run()
            for part in _split_list(child):
                out.block(part)
        elif _is_block(child):
            out.block(child)
        else:
            out.inline(child)
            tail = None  # moved along with the element
        out.inline(tail)
    out.close_run()


def _split_list(lst: HtmlElement) -> list[HtmlElement]:
    """A long list cut at item boundaries into consecutive lists (numbering carried on)."""
    if lst.get("reversed") is not None:
        return [lst]
    try:
        start = int(lst.get("start") or 1)
    except ValueError:
        start = 1
    parts: list[HtmlElement] = []
    size = FRAGMENT_TEXT_LIMIT
    index = 0
    for item in list(lst):
        length = len(item.text_content()) if isinstance(item.tag, str) else 0
        if not parts or (size + length > FRAGMENT_TEXT_LIMIT and item.tag == "li"):
            part = lxml.html.Element(lst.tag, dict(lst.attrib))
            if lst.tag == "ol" and start + index != 1:
                part.set("start", str(start + index))
            parts.append(part)
            size = 0
        item.tail = None
        parts[-1].append(item)
        size += length
        index += item.tag == "li"
    return parts or [lst]


def _has_loose_text(el: HtmlElement) -> bool:
    return bool((el.text or "").strip()) or any((c.tail or "").strip() for c in el)


def _should_open(el: HtmlElement) -> bool:
    kids = [c for c in el if isinstance(c.tag, str)]
    if len(kids) == 1:
        return not _has_loose_text(el)
    return any(_is_block(c) for c in kids) and len(el.text_content()) > FRAGMENT_TEXT_LIMIT


def split_fragments(content_html: str) -> list[Fragment]:
    """Cut sanitised article HTML into reading fragments.

    Guarantees: fragments follow document order with `idx` 0, 1, 2...; each is a run of whole
    top-level blocks (a block is never cut); a fragment's text stays under
    `FRAGMENT_TEXT_LIMIT` characters unless one block alone exceeds it; every fragment has
    non-empty text (text-less blocks such as images join a neighbour). Each fragment's HTML
    is sanitised again, so it is safe on its own. Raises `ExtractionEmpty` when there is no
    text at all.
    """
    if not content_html.strip():
        raise ExtractionEmpty()
    root = lxml.html.fragment_fromstring(content_html, create_parent="div")
    groups: list[tuple[list[str], list[str], int]] = []
    html_parts: list[str] = []
    text_parts: list[str] = []
    size = 0
    collected = _Blocks()
    _collect_blocks(root, collected)
    for block_html, block_text in collected.blocks:
        if text_parts and block_text and size + len(block_text) > FRAGMENT_TEXT_LIMIT:
            groups.append((html_parts, text_parts, size))
            html_parts, text_parts, size = [], [], 0
        html_parts.append(block_html)
        if block_text:
            text_parts.append(block_text)
            size += len(block_text) + 2
    if html_parts:
        if text_parts or not groups:
            groups.append((html_parts, text_parts, size))
        else:  # trailing text-less blocks (an image, a rule) join the last fragment
            groups[-1][0].extend(html_parts)
    fragments = [
        Fragment(idx=i, html_sanitized=sanitize_html("".join(h)), canonical_text="\n\n".join(t))
        for i, (h, t, _) in enumerate(g for g in groups if g[1])
    ]
    if not fragments:
        raise ExtractionEmpty()
    return fragments
