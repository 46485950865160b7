"""Small tree helpers on lxml elements: text, traversal, measures used by the scorer."""

from __future__ import annotations

import re
from collections.abc import Iterator

from lxml import etree
from lxml.html import HtmlElement

from nexus.extraction.readability import patterns as pt

_STYLE_HIDDEN = re.compile(r"(?:^|;)\s*(?:display\s*:\s*none|visibility\s*:\s*hidden)\b", re.I)
_ASCII_NON_WORD = re.compile(r"[^A-Za-z0-9_]+")


def is_element(node: object) -> bool:
    return isinstance(node, etree._Element) and isinstance(node.tag, str)


def children(el: HtmlElement) -> list[HtmlElement]:
    return [c for c in el if isinstance(c.tag, str)]


def inner_text(el: HtmlElement, normalize: bool = True) -> str:
    """Text of the subtree, trimmed; runs of 2+ whitespace collapsed when `normalize`."""
    text = el.text_content().strip()
    return pt.SPACES.sub(" ", text) if normalize else text


def component_id(el: HtmlElement) -> str:
    """The element's id when it names a component; "" when it is the anchor slug of the
    element's own heading (`<section id="sharing-with-a-team"><h2>Sharing with a team`),
    whose words say what the section is about, not what kind of block it is."""
    value = el.get("id") or ""
    if "-" not in value and "_" not in value:
        return value
    heading = next(el.iter(*pt.HEADINGS), None)
    if heading is not None and pt.words(value) == pt.words(heading.text_content()):
        return ""
    return value


def match_string(el: HtmlElement) -> str:
    return f"{el.get('class') or ''} {component_id(el)}"


def class_weight(el: HtmlElement) -> int:
    weight = 0
    for value in (el.get("class"), component_id(el)):
        if value:
            if pt.NEGATIVE.search(value):
                weight -= 25
            if pt.POSITIVE.search(value):
                weight += 25
    return weight


def link_density(el: HtmlElement, text_length: int | None = None) -> float:
    """Share of the element's text that sits inside links (in-page anchors count 0.3)."""
    length = len(inner_text(el)) if text_length is None else text_length
    if not length:
        return 0.0
    link_length = 0.0
    for a in el.iter("a"):
        href = a.get("href") or ""
        coefficient = 0.3 if len(href) > 1 and href.startswith("#") else 1.0
        link_length += len(inner_text(a)) * coefficient
    return link_length / length


def text_density(el: HtmlElement, tags: frozenset[str] | tuple[str, ...]) -> float:
    length = len(inner_text(el))
    if not length:
        return 0.0
    inner = sum(len(inner_text(child)) for child in el.iter(*tags) if child is not el)
    return inner / length


def is_probably_visible(el: HtmlElement) -> bool:
    style = el.get("style")
    if style and _STYLE_HIDDEN.search(style):
        return False
    if el.get("hidden") is not None:
        return False
    aria_hidden = el.get("aria-hidden")
    return aria_hidden != "true" or "fallback-image" in (el.get("class") or "")


def has_ancestor_tag(el: HtmlElement, tag: str, max_depth: int = 3) -> bool:
    depth = 0
    parent = el.getparent()
    while parent is not None:
        if 0 < max_depth < depth:
            return False
        if parent.tag == tag:
            return True
        parent = parent.getparent()
        depth += 1
    return False


def ancestors(el: HtmlElement, max_depth: int = 0) -> list[HtmlElement]:
    found: list[HtmlElement] = []
    parent = el.getparent()
    while parent is not None:
        found.append(parent)
        if max_depth and len(found) == max_depth:
            break
        parent = parent.getparent()
    return found


def next_node(el: HtmlElement, skip_children: bool = False) -> HtmlElement | None:
    """The next element in document order (pre-order), optionally skipping `el`'s subtree."""
    if not skip_children:
        for child in el:
            if isinstance(child.tag, str):
                return child
    node: HtmlElement | None = el
    while node is not None:
        sibling = node.getnext()
        while sibling is not None and not isinstance(sibling.tag, str):
            sibling = sibling.getnext()
        if sibling is not None:
            return sibling
        node = node.getparent()
    return None


def remove(el: HtmlElement) -> None:
    """Detach `el`, keeping the text that followed it in place."""
    if el.getparent() is not None:
        el.drop_tree()


def remove_and_next(el: HtmlElement) -> HtmlElement | None:
    following = next_node(el, skip_children=True)
    remove(el)
    return following


def is_blank(text: str | None) -> bool:
    return text is None or not text.strip()


def has_single_tag_inside(el: HtmlElement, tag: str) -> bool:
    kids = children(el)
    if len(kids) != 1 or kids[0].tag != tag:
        return False
    return is_blank(el.text) and all(is_blank(c.tail) for c in el)


def has_child_block(el: HtmlElement) -> bool:
    return any(c.tag in pt.DIV_TO_P_ELEMS or has_child_block(c) for c in children(el))


def is_without_content(el: HtmlElement) -> bool:
    if el.text_content().strip():
        return False
    kids = children(el)
    if not kids:
        return True
    breaks = sum(1 for _ in el.iter("br", "hr"))
    return len(kids) == breaks


def is_phrasing(node: HtmlElement) -> bool:
    tag = node.tag
    if tag in pt.PHRASING:
        return True
    if tag in ("a", "del", "ins"):
        return all(is_phrasing(c) for c in children(node))
    return False


def all_phrasing(el: HtmlElement) -> bool:
    return all(is_phrasing(c) for c in children(el))


class Appender:
    """Appends elements and text to `parent` in constant time (lxml's len() is linear)."""

    def __init__(self, parent: HtmlElement) -> None:
        self.parent = parent
        self.last: HtmlElement | None = parent[-1] if len(parent) else None

    def text(self, text: str | None) -> None:
        if not text:
            return
        if self.last is None:
            self.parent.text = (self.parent.text or "") + text
        else:
            self.last.tail = (self.last.tail or "") + text

    def element(self, el: HtmlElement) -> None:
        self.parent.append(el)
        self.last = el


def rename(el: HtmlElement, tag: str) -> HtmlElement:
    el.tag = tag
    return el


def iter_elements(root: HtmlElement, *tags: str) -> Iterator[HtmlElement]:
    """Snapshot of matching descendants (safe to mutate the tree while consuming)."""
    return iter([e for e in root.iter(*tags) if e is not root] if tags else [])


def text_similarity(a: str, b: str) -> float:
    """1 - share of b's token text absent from a (ASCII word tokens, case-folded)."""
    tokens_a = [t for t in _ASCII_NON_WORD.split(a.lower()) if t]
    tokens_b = [t for t in _ASCII_NON_WORD.split(b.lower()) if t]
    if not tokens_a or not tokens_b:
        return 0.0
    set_a = set(tokens_a)
    unique_b = [t for t in tokens_b if t not in set_a]
    return 1 - len(" ".join(unique_b)) / len(" ".join(tokens_b))


def word_count(text: str) -> int:
    return len(re.split(r"\s+", text))
