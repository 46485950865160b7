"""Tidy the chosen content: drop widgets, share bars, link farms and layout tables."""

from __future__ import annotations

import lxml.html
from lxml.html import HtmlElement

from nexus.extraction.readability import dom
from nexus.extraction.readability import patterns as pt
from nexus.extraction.readability.grab import Pass

_EMBEDS = ("object", "embed", "iframe")
_DATA_TABLE_PARTS = ("col", "colgroup", "tfoot", "thead", "th")
_LAZY_SRCSET = r"\.(jpg|jpeg|png|webp)\s+\d"


def _is_video_embed(el: HtmlElement) -> bool:
    if any(pt.VIDEO_HOSTS.search(v) for v in el.attrib.values()):
        return True
    if el.tag == "object":
        return bool(pt.VIDEO_HOSTS.search(el.text_content()))
    return False


def clean_tag(root: HtmlElement, tag: str) -> None:
    keep_videos = tag in _EMBEDS
    for el in list(root.iter(tag)):
        if el is not root and not (keep_videos and _is_video_embed(el)):
            dom.remove(el)


def _row_and_column_count(table: HtmlElement) -> tuple[int, int]:
    rows = columns = 0
    for tr in table.iter("tr"):
        rows += _span(tr.get("rowspan"))
        columns = max(columns, sum(_span(td.get("colspan")) for td in tr.iter("td")))
    return rows, columns


def _span(value: str | None) -> int:
    try:
        return int(value or 1) or 1
    except ValueError:
        return 1


def _is_data_table(table: HtmlElement) -> bool:
    if table.get("role") == "presentation" or table.get("datatable") == "0":
        return False
    if table.get("summary"):
        return True
    caption = next(table.iter("caption"), None)
    if caption is not None and (len(caption) or caption.text):
        return True
    if any(True for _ in table.iter(*_DATA_TABLE_PARTS)):
        return True
    if any(t is not table for t in table.iter("table")):
        return False
    rows, columns = _row_and_column_count(table)
    if rows == 1 or columns == 1:
        return False
    if rows >= 10 or columns > 4:
        return True
    return rows * columns > 10


def mark_data_tables(root: HtmlElement) -> set[HtmlElement]:
    return {t for t in root.iter("table") if _is_data_table(t)}


def _inside_data_table(el: HtmlElement, data_tables: set[HtmlElement]) -> bool:
    parent = el.getparent()
    while parent is not None:
        if parent.tag == "table" and parent in data_tables:
            return True
        parent = parent.getparent()
    return False


def _counts(el: HtmlElement) -> dict[str, int]:
    counts = {"p": 0, "img": 0, "li": 0, "input": 0, "embed": 0}
    for d in el.iter("p", "img", "li", "input", *_EMBEDS):
        if d is el:
            continue
        if d.tag in _EMBEDS:
            counts["embed"] += 1
        else:
            counts[d.tag] += 1
    return counts


def _is_gallery(el: HtmlElement, images: int) -> bool:
    if any(len(dom.children(c)) > 1 for c in dom.children(el)):
        return False
    return images == sum(1 for d in el.iter("li") if d is not el)


def _looks_like_clutter(
    state: Pass, el: HtmlElement, tag: str, data_tables: set[HtmlElement]
) -> bool:
    if tag == "table" and el in data_tables:
        return False
    if _inside_data_table(el, data_tables) or dom.has_ancestor_tag(el, "code"):
        return False
    if any(t in data_tables for t in el.iter("table") if t is not el):
        return False
    weight = state.weight(el)
    if weight < 0:
        return True
    text = dom.inner_text(el)
    if text.count(",") >= 10:
        return False
    is_list = tag in ("ul", "ol")
    if not is_list:
        list_length = sum(len(dom.inner_text(x)) for x in el.iter("ul", "ol") if x is not el)
        is_list = bool(text) and list_length / len(text) > 0.9
    if any(_is_video_embed(e) for e in el.iter(*_EMBEDS) if e is not el):
        return False
    if pt.AD_WORDS.match(text) or pt.LOADING_WORDS.match(text):
        return True
    c = _counts(el)
    images, paragraphs = c["img"], c["p"]
    density = dom.link_density(el, len(text))
    in_figure = dom.has_ancestor_tag(el, "figure", 0)
    remove = (
        (not in_figure and images > 1 and paragraphs / images < 0.5)
        or (not is_list and c["li"] - 100 > paragraphs)
        or c["input"] > paragraphs // 3
        or (
            not is_list
            and not in_figure
            and dom.text_density(el, pt.HEADINGS) < 0.9
            and len(text) < 25
            and (images == 0 or images > 2)
            and density > 0
        )
        or (not is_list and weight < 25 and density > 0.2)
        or (weight >= 25 and density > 0.5)
        or (c["embed"] == 1 and len(text) < 75)
        or c["embed"] > 1
        or (images == 0 and dom.text_density(el, pt.TEXTISH) == 0)
    )
    if is_list and remove and _is_gallery(el, images):
        return False
    return remove


def clean_conditionally(
    state: Pass, root: HtmlElement, tag: str, data_tables: set[HtmlElement]
) -> None:
    if not state.clean_conditionally:
        return
    for el in reversed([e for e in root.iter(tag) if e is not root]):
        if el.getparent() is not None and _looks_like_clutter(state, el, tag, data_tables):
            dom.remove(el)


def _clean_share_bars(root: HtmlElement) -> None:
    for block in dom.children(root):
        end = dom.next_node(block, skip_children=True)
        node = dom.next_node(block)
        while node is not None and node is not end:
            if pt.SHARE.search(dom.match_string(node)) and len(node.text_content()) < 500:
                node = dom.remove_and_next(node)
            else:
                node = dom.next_node(node)


def _fix_lazy_images(root: HtmlElement) -> None:
    import re

    for img in root.iter("img", "picture", "figure"):
        src = img.get("src") or ""
        if (src or img.get("srcset")) and "lazy" not in (img.get("class") or "").lower():
            continue
        for name, value in list(img.attrib.items()):
            if name in ("src", "srcset", "alt"):
                continue
            target = None
            if re.search(_LAZY_SRCSET, value, re.I):
                target = "srcset"
            elif re.match(r"^\s*\S+\.(jpg|jpeg|png|webp)\S*\s*$", value, re.I):
                target = "src"
            if target and img.tag in ("img", "picture"):
                img.set(target, value)
            elif target and not any(True for _ in img.iter("img", "picture")):
                child = lxml.html.Element("img")
                child.set(target, value)
                img.append(child)


def _unwrap_single_cell_tables(root: HtmlElement) -> None:
    for table in list(root.iter("table")):
        body = table
        if dom.has_single_tag_inside(table, "tbody"):
            body = dom.children(table)[0]
        if not dom.has_single_tag_inside(body, "tr"):
            continue
        row = dom.children(body)[0]
        if not dom.has_single_tag_inside(row, "td"):
            continue
        cell = dom.children(row)[0]
        cell.tag = "p" if dom.all_phrasing(cell) else "div"
        cell.tail = table.tail
        if table.getparent() is not None:
            table.addprevious(cell)
            table.getparent().remove(table)


def prepare_article(state: Pass, article: HtmlElement) -> None:
    data_tables = mark_data_tables(article)
    _fix_lazy_images(article)
    clean_conditionally(state, article, "form", data_tables)
    clean_conditionally(state, article, "fieldset", data_tables)
    for tag in ("object", "embed", "footer", "link", "aside"):
        clean_tag(article, tag)
    _clean_share_bars(article)
    for tag in ("iframe", "input", "textarea", "select", "button"):
        clean_tag(article, tag)
    for heading in list(article.iter("h1", "h2")):
        if state.weight(heading) < 0:
            dom.remove(heading)
    for tag in ("table", "ul", "div"):
        clean_conditionally(state, article, tag, data_tables)
    for h1 in article.iter("h1"):
        h1.tag = "h2"
    for p in list(article.iter("p")):
        if not any(True for _ in p.iter("img", *_EMBEDS)) and not p.text_content().strip():
            dom.remove(p)
    for br in list(article.iter("br")):
        nxt = br.getnext()
        if dom.is_blank(br.tail) and nxt is not None and nxt.tag == "p":
            dom.remove(br)
    _unwrap_single_cell_tables(article)
