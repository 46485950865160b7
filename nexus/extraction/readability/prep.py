"""Document preparation before scoring: scripts and styles out, <br> runs into paragraphs."""

from __future__ import annotations

import lxml.html
from lxml.html import HtmlElement

from nexus.extraction.readability import dom


def remove_scripts_and_styles(doc: HtmlElement) -> None:
    for el in list(doc.iter("script", "noscript", "style", "template")):
        dom.remove(el)


def replace_fonts(doc: HtmlElement) -> None:
    for el in doc.iter("font"):
        el.tag = "span"


def _next_element_if_adjacent(el: HtmlElement) -> HtmlElement | None:
    """The following sibling element when only whitespace separates it from `el`."""
    if not dom.is_blank(el.tail):
        return None
    sibling = el.getnext()
    while sibling is not None and not isinstance(sibling.tag, str):
        if not dom.is_blank(sibling.tail):
            return None
        sibling = sibling.getnext()
    return sibling


def _trim_trailing_whitespace(p: HtmlElement) -> None:
    while len(p):
        last = p[-1]
        if not dom.is_blank(last.tail):
            last.tail = last.tail.rstrip() if last.tail else last.tail
            return
        if last.tag == "br":
            last.tail = None
            p.remove(last)
            continue
        last.tail = None
        return
    if p.text:
        p.text = p.text.rstrip()


def _start_paragraph(br: HtmlElement) -> None:
    parent = br.getparent()
    if parent is None:
        return
    p = lxml.html.Element("p")
    p.text = br.tail
    br.tail = None
    br.addprevious(p)
    parent.remove(br)
    following = p.getnext()
    inside = dom.Appender(p)
    while following is not None:
        if following.tag == "br":
            after = _next_element_if_adjacent(following)
            if after is not None and after.tag == "br":
                break
        if not isinstance(following.tag, str) or not dom.is_phrasing(following):
            break
        nxt = following.getnext()
        tail = following.tail
        following.tail = None
        inside.element(following)
        inside.text(tail)
        following = nxt
    _trim_trailing_whitespace(p)
    if parent.tag == "p":
        parent.tag = "div"


def replace_brs(body: HtmlElement) -> None:
    """Turn two or more consecutive <br>s into a paragraph holding the phrasing that follows."""
    for br in list(body.iter("br")):
        if br.getparent() is None:
            continue
        replaced = False
        after = _next_element_if_adjacent(br)
        while after is not None and after.tag == "br":
            replaced = True
            following = _next_element_if_adjacent(after)
            dom.remove(after)
            after = following
        if replaced:
            _start_paragraph(br)


def prepare(doc: HtmlElement) -> None:
    remove_scripts_and_styles(doc)
    body = doc.find("body")
    if body is not None:
        replace_brs(body)
    replace_fonts(doc)
