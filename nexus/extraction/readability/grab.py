"""Find the article node: walk, score paragraphs into ancestors, pick, merge siblings."""

from __future__ import annotations

from dataclasses import dataclass, field

import lxml.html
from lxml.html import HtmlElement

from nexus.extraction.readability import dom
from nexus.extraction.readability import patterns as pt

TOP_CANDIDATES = 5
MIN_AGREEING_CANDIDATES = 3
_TAG_SCORES = {
    "div": 5, "pre": 3, "td": 3, "blockquote": 3,
    "address": -3, "ol": -3, "ul": -3, "dl": -3, "dd": -3, "dt": -3, "li": -3, "form": -3,
    "h1": -5, "h2": -5, "h3": -5, "h4": -5, "h5": -5, "h6": -5, "th": -5,
}  # fmt: skip
_EMPTY_REMOVABLE = frozenset({"div", "section", "header", *pt.HEADINGS})


@dataclass
class Pass:
    """One attempt over a fresh copy of the document; later attempts relax the flags."""

    title: str
    strip_unlikely: bool = True
    weight_classes: bool = True
    clean_conditionally: bool = True
    byline: str | None = None
    scores: dict[HtmlElement, float] = field(default_factory=dict)

    def weight(self, el: HtmlElement) -> int:
        return dom.class_weight(el) if self.weight_classes else 0

    def init_score(self, el: HtmlElement) -> None:
        self.scores[el] = _TAG_SCORES.get(el.tag, 0) + self.weight(el)


def _check_byline(state: Pass, el: HtmlElement, match: str) -> bool:
    if state.byline:
        return False
    rel, itemprop = el.get("rel"), el.get("itemprop") or ""
    if rel == "author" or "author" in itemprop or pt.BYLINE.search(match):
        text = el.text_content().strip()
        if 0 < len(text) < 100:
            state.byline = " ".join(text.split())
            return True
    return False


def _is_unlikely(el: HtmlElement, match: str) -> bool:
    if el.tag in ("body", "a"):
        return False
    if pt.UNLIKELY.search(match) and not pt.MAYBE_CANDIDATE.search(match):
        return not (dom.has_ancestor_tag(el, "table") or dom.has_ancestor_tag(el, "code"))
    return el.get("role") in pt.UNLIKELY_ROLES


def _has_phrasing_run(div: HtmlElement) -> bool:
    if not dom.is_blank(div.text):
        return True
    return any(
        not dom.is_blank(c.tail) or dom.is_phrasing(c) for c in div if isinstance(c.tag, str)
    )


def _wrap_phrasing_runs(div: HtmlElement) -> None:
    """Gather runs of inline content directly in a div into paragraphs."""
    if not _has_phrasing_run(div):
        return
    items: list[HtmlElement | str] = [div.text] if div.text else []
    for child in list(div):
        tail, child.tail = child.tail, None
        div.remove(child)
        items.append(child)
        if tail:
            items.append(tail)
    div.text = None
    outer = dom.Appender(div)
    inner: dom.Appender | None = None
    for item in items:
        if isinstance(item, str) or dom.is_phrasing(item):
            if inner is None:
                if isinstance(item, str) and not item.strip():
                    outer.text(item)
                    continue
                paragraph = lxml.html.Element("p")
                outer.element(paragraph)
                inner = dom.Appender(paragraph)
            if isinstance(item, str):
                inner.text(item)
            else:
                inner.element(item)
        else:
            if inner is not None:
                _trim_paragraph(inner.parent)
                inner = None
            outer.element(item)
    if inner is not None:
        _trim_paragraph(inner.parent)


def _trim_paragraph(p: HtmlElement) -> None:
    while len(p) and p[-1].tag == "br" and dom.is_blank(p[-1].tail):
        p.remove(p[-1])
    if len(p):
        if dom.is_blank(p[-1].tail):
            p[-1].tail = None
    elif dom.is_blank(p.text):
        p.text = None


def _visit_div(node: HtmlElement, to_score: list[HtmlElement]) -> HtmlElement:
    _wrap_phrasing_runs(node)
    if dom.has_single_tag_inside(node, "p") and dom.link_density(node) < 0.25:
        child = dom.children(node)[0]
        child.tail = node.tail
        node.addprevious(child)
        node.getparent().remove(node)
        to_score.append(child)
        return child
    if not dom.has_child_block(node):
        node.tag = "p"
        to_score.append(node)
    return node


def collect_elements(state: Pass, body: HtmlElement) -> list[HtmlElement]:
    """Walk the body once, dropping hidden and unlikely nodes; return the nodes worth scoring."""
    to_score: list[HtmlElement] = []
    drop_title_header = True
    node: HtmlElement | None = body
    while node is not None:
        match = dom.match_string(node)
        if not dom.is_probably_visible(node) or _check_byline(state, node, match):
            node = dom.remove_and_next(node)
            continue
        if (
            drop_title_header
            and node.tag in ("h1", "h2")
            and dom.text_similarity(state.title, dom.inner_text(node, False)) > 0.75
        ):
            drop_title_header = False
            node = dom.remove_and_next(node)
            continue
        if state.strip_unlikely and _is_unlikely(node, match):
            node = dom.remove_and_next(node)
            continue
        if node.get("aria-modal") == "true" and node.get("role") == "dialog":
            node = dom.remove_and_next(node)
            continue
        if node.tag in _EMPTY_REMOVABLE and dom.is_without_content(node):
            node = dom.remove_and_next(node)
            continue
        if node.tag in pt.TAGS_TO_SCORE:
            to_score.append(node)
        elif node.tag == "div":
            node = _visit_div(node, to_score)
        node = dom.next_node(node)
    return to_score


def score_elements(state: Pass, elements: list[HtmlElement]) -> list[HtmlElement]:
    candidates: list[HtmlElement] = []
    for el in elements:
        parent = el.getparent()
        if parent is None:
            continue
        text = dom.inner_text(el)
        if len(text) < 25:
            continue
        lineage = [a for a in dom.ancestors(el, 5) if a.getparent() is not None]
        if not lineage:
            continue
        score = 1 + len(pt.COMMAS.split(text)) + min(len(text) // 100, 3)
        for level, ancestor in enumerate(lineage):
            if ancestor not in state.scores:
                state.init_score(ancestor)
                candidates.append(ancestor)
            divider = 1 if level == 0 else 2 if level == 1 else level * 3
            state.scores[ancestor] += score / divider
    return candidates


def _top_candidates(state: Pass, candidates: list[HtmlElement]) -> list[HtmlElement]:
    for cand in candidates:
        state.scores[cand] *= 1 - dom.link_density(cand)
    ranked = sorted(candidates, key=lambda c: -state.scores[c])
    return ranked[:TOP_CANDIDATES]


def _climb_to_shared_ancestor(
    state: Pass, top: HtmlElement, others: list[HtmlElement]
) -> HtmlElement:
    best = state.scores[top]
    if best == 0:
        # Nothing scored (every paragraph is all links): no runner-up can be "close" to a
        # winner with no score, so the winner stands alone.
        return top
    lineages = [set(dom.ancestors(o)) for o in others if state.scores[o] / best >= 0.75]
    if len(lineages) < MIN_AGREEING_CANDIDATES:
        return top
    parent = top.getparent()
    while parent is not None and parent.tag not in ("body", "html"):
        if sum(parent in lineage for lineage in lineages) >= MIN_AGREEING_CANDIDATES:
            return parent
        parent = parent.getparent()
    return top


def _climb_while_scores_grow(state: Pass, top: HtmlElement) -> HtmlElement:
    last = state.scores[top]
    threshold = last / 3
    parent = top.getparent()
    while parent is not None and parent.tag not in ("body", "html"):
        if parent not in state.scores:
            parent = parent.getparent()
            continue
        score = state.scores[parent]
        if score < threshold:
            break
        if score > last:
            return parent
        last = score
        parent = parent.getparent()
    return top


def pick_top(
    state: Pass, body: HtmlElement, candidates: list[HtmlElement]
) -> tuple[HtmlElement, bool]:
    """The best candidate, or (when none) a new div holding the whole body; flag says which."""
    ranked = _top_candidates(state, candidates)
    top = ranked[0] if ranked else None
    if top is None or top.tag == "body":
        holder = lxml.html.Element("div")
        holder.text, body.text = body.text, None
        for child in list(body):
            holder.append(child)
        body.append(holder)
        state.init_score(holder)
        return holder, True
    top = _climb_to_shared_ancestor(state, top, ranked[1:])
    if top not in state.scores:
        state.init_score(top)
    top = _climb_while_scores_grow(state, top)
    parent = top.getparent()
    while (
        parent is not None and parent.tag not in ("body", "html") and len(dom.children(parent)) == 1
    ):
        top, parent = parent, parent.getparent()
    if top not in state.scores:
        state.init_score(top)
    return top, False


def _sibling_belongs(state: Pass, sibling: HtmlElement, top: HtmlElement, threshold: float) -> bool:
    if sibling is top:
        return True
    bonus = 0.0
    top_class = top.get("class") or ""
    if top_class and (sibling.get("class") or "") == top_class:
        bonus = state.scores[top] * 0.2
    if sibling in state.scores and state.scores[sibling] + bonus >= threshold:
        return True
    if sibling.tag != "p":
        return False
    text = dom.inner_text(sibling)
    density = dom.link_density(sibling, len(text))
    if len(text) > 80:
        return density < 0.25
    return 0 < len(text) < 80 and density == 0 and bool(pt.SENTENCE_END.search(text))


def merge_siblings(state: Pass, top: HtmlElement) -> HtmlElement:
    """A new div with the top candidate and the siblings that look like more of the article."""
    article = lxml.html.Element("div")
    parent = top.getparent()
    if parent is None:
        article.append(top)
        return article
    threshold = max(10.0, state.scores[top] * 0.2)
    for sibling in dom.children(parent):
        if _sibling_belongs(state, sibling, top, threshold):
            if sibling.tag not in pt.ALTER_TO_DIV_EXCEPTIONS:
                sibling.tag = "div"
            sibling.tail = None
            article.append(sibling)
    return article
