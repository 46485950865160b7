"""HTML extraction never raises anything but a precise terminal error (issue 10 point 8).

Property: for any page derived from a real one (truncated, bytes or characters mutated,
tags deleted, duplicated or nested deep, body emptied, attributes made huge, bytes
re-encoded and declared in another charset), the work the extraction process does for a
fetched page (`nexus.extraction.pool.web_page`: decode, extract, cut into fragments)
returns a title and non-empty fragments, or raises a `TerminalError` whose code says what
is wrong with the page. Any other exception would end as a retried `E_INTERNAL`: a bug.

Bounded for CI: a fixed number of examples from a fixed seed (`derandomize`), no deadline
(the 2-core CI box is shared and slow pages take ~0.3 s there), shrinking kept.
Set `NEXUS_FUZZ_EXAMPLES` to run more locally.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nexus.errors import TerminalError
from nexus.extraction.article import extract_article
from nexus.extraction.pool import web_page

PAGES_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "article-pages"
PAGES = sorted(p.name for p in PAGES_DIR.iterdir() if (p / "source.html").is_file())
# What a page alone can be blamed for.
PAGE_CODES = frozenset({"E_EXTRACTION_EMPTY", "E_UNSUPPORTED_CONTENT"})
EXAMPLES = int(os.environ.get("NEXUS_FUZZ_EXAMPLES", "120"))
# Labels: the standard's (including the replacement encoding) and ones it does not know.
LABELS = [
    None, "utf-8", "windows-1252", "iso-8859-2", "koi8-r", "shift_jis", "euc-jp", "gb18030",
    "big5", "euc-kr", "iso-2022-jp", "utf-16le", "utf-16be", "x-user-defined",
    "iso-2022-kr", "punycode", "idna", "rot13", "hex", "undefined", "utf-7",
]  # fmt: skip
# Python codecs to re-encode a page with before declaring some (maybe other) label.
CODECS = ["utf-8", "utf-16-le", "utf-16-be", "cp1252", "shift_jis", "gb18030", "koi8-r"]
NASTY = [
    "\x00", "\ufffe", "\ud800", "\x1b", "\u202e", "<", ">", "&", "&#0;", "&#x110000;",
    "<![CDATA[", "<!--", "-->", "<?xml version='1.0'?>", "</body>", "</html>", "<body>",
    "<script>", "<table>", "<td>", "<li>", "<p>", "</p>", "<br><br>", "<svg><math>",
    "<template>", '<div hidden class="content">', '<a href="javascript:x">',
    '<img src="data:x" srcset="a.jpg 1x">', "<base href='::'>", "\r\n", " ",
]  # fmt: skip
_TAG = re.compile(r"<[^>]{0,200}>")


@functools.cache
def source(name: str) -> str:
    return (PAGES_DIR / name / "source.html").read_text(errors="replace")


def _tag_spans(html: str) -> list[tuple[int, int]]:
    return [m.span() for m in _TAG.finditer(html)]


@st.composite
def mutated_page(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """The bytes of a real page after a few random mutations, and the label declared."""
    html = source(draw(st.sampled_from(PAGES)))
    if draw(st.integers(0, 5)) == 0:  # a page whose every paragraph is a link: scores of 0
        html = _links_only(draw, html)
    for _ in range(draw(st.integers(0, 4))):
        html = draw(MUTATIONS)(draw, html)
    encoding = draw(st.sampled_from(CODECS))
    data = html.encode(encoding, "surrogatepass" if encoding.startswith("utf") else "replace")
    for _ in range(draw(st.integers(0, 3))):  # byte flips after encoding
        if data:
            at = draw(st.integers(0, len(data) - 1))
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    return data, draw(st.sampled_from(LABELS))


def _truncate(draw: st.DrawFn, html: str) -> str:
    return html[: draw(st.integers(0, len(html)))]


def _mutate_chars(draw: st.DrawFn, html: str) -> str:
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(html)))
        piece = draw(st.one_of(st.sampled_from(NASTY), st.text(max_size=4)))
        html = html[:at] + piece + html[at + draw(st.integers(0, 2)) :]
    return html


def _delete_tags(draw: st.DrawFn, html: str) -> str:
    spans = _tag_spans(html)
    if not spans:
        return html
    for start, end in sorted(draw(st.sets(st.sampled_from(spans), max_size=20)), reverse=True):
        html = html[:start] + html[end:]
    return html


def _duplicate_tags(draw: st.DrawFn, html: str) -> str:
    spans = _tag_spans(html)
    if not spans:
        return html
    start, end = draw(st.sampled_from(spans))
    return html[:end] + html[start:end] * draw(st.integers(1, 50)) + html[end:]


def _nest(draw: st.DrawFn, html: str) -> str:
    """Wrap a stretch of the page in many levels of one container (past libxml2's 256)."""
    tag = draw(st.sampled_from(["div", "section", "table", "ul", "p", "blockquote", "span"]))
    depth = draw(st.integers(1, 400))
    start = draw(st.integers(0, len(html)))
    end = draw(st.integers(start, len(html)))
    opening = "<table><tr><td>" if tag == "table" else "<li>" if tag == "ul" else ""
    wrap_open = f"<{tag}>{opening}" * depth
    closing = "</td></tr>" if tag == "table" else "</li>" if tag == "ul" else ""
    return html[:start] + wrap_open + html[start:end] + f"{closing}</{tag}>" * depth + html[end:]


def _empty_body(draw: st.DrawFn, html: str) -> str:
    inside = draw(st.sampled_from(["", " ", "<div></div>", "<p>&nbsp;</p>", "<br>" * 50]))
    return _replace_body(html, inside)


def _replace_body(html: str, inside: str) -> str:
    start = re.search(r"(?i)<body\b[^>]*>", html)
    head = html[: start.start()] if start else html
    return f"{head}<body>{inside}</body></html>"


def _huge_attribute(draw: st.DrawFn, html: str) -> str:
    spans = [s for s in _tag_spans(html) if html[s[0] + 1 : s[0] + 2] not in "/!?"]
    if not spans:
        return html
    _start, end = draw(st.sampled_from(spans))
    name = draw(st.sampled_from(["class", "id", "href", "src", "style", "data-src", "title"]))
    value = draw(st.sampled_from(["x", "comment ", "a.jpg 1x,", "&amp;", "\"'"])) * 200_000
    return html[: end - 1] + f' {name}="{value}"' + html[end - 1 :]


def _links_only(draw: st.DrawFn, html: str) -> str:
    """Keep only the paragraphs, each made one link: every candidate then scores zero."""
    paragraphs = re.findall(r"(?is)<p\b[^>]*>(.*?)</p>", html)
    keep = draw(st.integers(1, 30))
    body = "".join(
        f'<div><p><a href="/{i}">{" ".join(re.sub("<[^>]*>", " ", t).split())}</a></p></div>'
        for i, t in enumerate(paragraphs[:keep])
    )
    return _replace_body(html, f"<div>{body}</div>")


MUTATIONS = st.sampled_from(
    [
        _truncate, _mutate_chars, _delete_tags, _duplicate_tags, _nest, _empty_body,
        _huge_attribute, _links_only,
    ]
)  # fmt: skip


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(page=mutated_page())
def test_mutated_real_pages_give_an_article_or_a_precise_code(
    page: tuple[bytes, str | None],
) -> None:
    body, label = page
    try:
        title, rows = web_page(body, label, "https://example.test/page/")
    except TerminalError as exc:
        assert exc.code in PAGE_CODES, exc
        return
    assert title is None or title.strip()
    assert rows and [r[0] for r in rows] == list(range(len(rows)))
    assert all(text.strip() for _, _, text in rows)


def test_a_winner_that_scores_zero_is_kept() -> None:
    """Every paragraph is one link: all scores are 0 after the link-density discount (the
    scorer divided by the winner's score before)."""
    para = '<p><a href="/x">' + "word, " * 19 + "word</a></p>"
    html = f"<html><body><div><div>{para * 3}</div><div>{para * 3}</div></div></body></html>"
    article = extract_article(html, "https://example.test/")
    assert article.text.count("word,") >= 3 * 19  # the winner and its paragraphs


@pytest.mark.parametrize("html", ["", " ", "<html>", "<body></body>", "\x00", "<p>&nbsp;</p>"])
def test_empty_pages_are_extraction_empty(html: str) -> None:
    with pytest.raises(TerminalError) as info:
        web_page(html.encode(), None, "https://example.test/")
    assert info.value.code == "E_EXTRACTION_EMPTY"
