"""Canonical plain text of (sanitised) article HTML.

Rules, relied on by search and quoting:
- every block element (paragraph, heading, list item, table row, quote, figure caption...)
  becomes its own block; blocks are separated by one blank line (`"\\n\\n"`);
- inline content is joined and any whitespace run collapses to one space; `<br>` is a line
  break inside its block; table cells in a row are separated by one space;
- `<pre>` keeps its line breaks (trailing spaces trimmed);
- the result is Unicode NFC, with no leading or trailing whitespace.
"""

from __future__ import annotations

import re
import unicodedata

import lxml.html
from lxml import etree
from lxml.html import HtmlElement

BLOCK_TAGS: frozenset[str] = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "dd", "details",
        "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
        "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "html", "li", "main",
        "nav", "ol", "p", "section", "summary", "table", "tbody", "tfoot", "thead", "tr", "ul",
    }
)  # fmt: skip
_CELLS = frozenset({"td", "th"})
_SKIPPED = frozenset({"script", "style", "template", "head", "title", "noscript"})
_LINE_BREAK = "\x00"
_SPACE_RUN = re.compile(r"[^\S\x00]+")


def _collapse(raw: str) -> str:
    lines = _SPACE_RUN.sub(" ", raw).split(_LINE_BREAK)
    return "\n".join(line.strip() for line in lines).strip("\n ")


def _preformatted(el: HtmlElement) -> str:
    text = el.text_content().replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


class _Collector:
    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.buffer: list[str] = []

    def flush(self) -> None:
        if self.buffer:
            block = _collapse("".join(self.buffer))
            self.buffer.clear()
            if block:
                self.blocks.append(block)

    def add(self, text: str | None) -> None:
        if text:
            self.buffer.append(text.replace(_LINE_BREAK, ""))

    def add_block(self, text: str) -> None:
        self.flush()
        if text:
            self.blocks.append(text)


def _walk(root: HtmlElement, out: _Collector) -> None:
    walker = etree.iterwalk(root, events=("start", "end"))
    for event, el in walker:
        tag = el.tag if isinstance(el.tag, str) else None
        if event == "start":
            if tag is None or tag in _SKIPPED or tag == "pre":
                if tag == "pre":
                    out.add_block(_preformatted(el))
                walker.skip_subtree()
                continue
            if tag in BLOCK_TAGS:
                out.flush()
            elif tag in _CELLS:
                out.add(" ")
            elif tag == "br":
                out.buffer.append(_LINE_BREAK)
            out.add(el.text)
        else:
            if tag in BLOCK_TAGS:
                out.flush()
            elif tag in _CELLS:
                out.add(" ")
            if el is not root:
                out.add(el.tail)


def element_text(root: HtmlElement) -> str:
    """Canonical text of an element subtree (its own tail excluded)."""
    out = _Collector()
    _walk(root, out)
    out.flush()
    return unicodedata.normalize("NFC", "\n\n".join(out.blocks))


def canonical_text(html: str) -> str:
    """Canonical text of an HTML fragment; empty string for markup without text."""
    if not html.strip():
        return ""
    root = lxml.html.fragment_fromstring(html, create_parent="div")
    return element_text(root)
