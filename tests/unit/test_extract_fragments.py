"""Canonical text and fragment splitting."""

from __future__ import annotations

import lxml.html
import pytest

from nexus.extraction.article import (
    FRAGMENT_TEXT_LIMIT,
    ExtractionEmpty,
    extract_article,
    split_fragments,
)
from nexus.extraction.sanitize import sanitize_html
from nexus.extraction.text import canonical_text


def test_blocks_are_separated_by_blank_lines_inline_joined() -> None:
    html = (
        "<h2>Title</h2><p>One <em>two</em>  three\n four</p>"
        "<ul><li>a <b>b</b></li><li>c</li></ul><blockquote><p>q</p></blockquote>"
    )
    assert canonical_text(html) == "Title\n\nOne two three four\n\na b\n\nc\n\nq"


def test_br_is_a_line_break_and_cells_are_spaced() -> None:
    html = (
        "<p>line one<br>line two<br/> </p>"
        "<table><tr><td>a</td><td>b</td></tr><tr><th>c</th></tr></table>"
    )
    assert canonical_text(html) == "line one\nline two\n\na b\n\nc"


def test_pre_keeps_line_breaks() -> None:
    html = "<p>x</p><pre>def f():\n    return 1   \n</pre>"
    assert canonical_text(html) == "x\n\ndef f():\n    return 1"


def test_whitespace_and_unicode_normalised() -> None:
    assert canonical_text("<p>\u00a0 e\u0301t\u00e9 \t\n x </p>") == "\u00e9t\u00e9 x"
    assert canonical_text("") == ""
    assert canonical_text("<p> </p><img src='x'>") == ""


def test_small_article_is_one_fragment() -> None:
    frags = split_fragments("<div><p>one</p><p>two</p></div>")
    assert [(f.idx, f.canonical_text) for f in frags] == [(0, "one\n\ntwo")]


def _long_article(blocks: int, size: int) -> str:
    word = "word "
    paras = "".join(f"<p>{i} {word * (size // len(word))}</p>" for i in range(blocks))
    return sanitize_html(f"<div><div>{paras}</div></div>", "https://e.com/")


def test_long_article_splits_on_block_boundaries_under_limit() -> None:
    html = _long_article(blocks=40, size=1000)
    frags = split_fragments(html)
    assert len(frags) > 1
    assert [f.idx for f in frags] == list(range(len(frags)))
    assert all(0 < len(f.canonical_text) <= FRAGMENT_TEXT_LIMIT for f in frags)
    joined = "\n\n".join(f.canonical_text for f in frags)
    assert joined == canonical_text(html)
    for f in frags:  # every fragment holds whole paragraphs
        root = lxml.html.fragment_fromstring(f.html_sanitized, create_parent="div")
        assert all(child.tag == "p" for child in root)


def test_oversized_block_is_kept_whole() -> None:
    big = "x " * (FRAGMENT_TEXT_LIMIT + 500)
    html = f"<p>small</p><blockquote><p>{big}</p></blockquote><p>after</p>"
    frags = split_fragments(html)
    assert [f.canonical_text for f in frags] == ["small", big.strip(), "after"]


def test_long_list_is_cut_between_items_keeping_numbering() -> None:
    items = "".join(f"<li>item {i} {'word ' * 600}</li>" for i in range(10))
    frags = split_fragments(f'<p>intro</p><ol start="3">{items}</ol><p>end</p>')
    assert len(frags) > 2
    assert all(len(f.canonical_text) <= FRAGMENT_TEXT_LIMIT for f in frags)
    starts = [
        int(ol.get("start", "1"))
        for f in frags
        for ol in lxml.html.fragment_fromstring(f.html_sanitized, create_parent="div").iter("ol")
    ]
    assert starts[0] == 3 and starts == sorted(starts) and len(set(starts)) == len(starts)
    texts = "\n\n".join(f.canonical_text for f in frags)
    assert [f"item {i} " in texts for i in range(10)] == [True] * 10


def test_inline_content_of_an_opened_wrapper_stays_one_paragraph() -> None:
    words = "word " * 2000
    html = f"<div>Loose <a href='https://e.com/'>link</a> text<p>{words}</p>more <b>bold</b></div>"
    frags = split_fragments(html)
    texts = [f.canonical_text for f in frags]
    assert texts[0].startswith("Loose link text")
    assert texts[-1].endswith("more bold")


def test_textless_blocks_join_a_neighbour_and_no_fragment_is_empty() -> None:
    html = (
        '<figure><img src="https://e.com/a.png"></figure><p>first</p><hr>'
        '<p>second</p><img src="https://e.com/b.png">'
    )
    frags = split_fragments(html)
    assert len(frags) == 1
    assert 'src="https://e.com/a.png"' in frags[0].html_sanitized
    assert 'src="https://e.com/b.png"' in frags[0].html_sanitized
    assert frags[0].canonical_text == "first\n\nsecond"


def test_loose_top_level_text_becomes_a_paragraph() -> None:
    frags = split_fragments("loose <b>bold</b> text<p>para</p>tail")
    assert frags[0].canonical_text.startswith("loose")
    assert "para" in frags[0].canonical_text and "tail" in frags[0].canonical_text


def test_fragment_html_is_sanitised_even_from_unsafe_input() -> None:
    frags = split_fragments('<p onclick="x">a<script>alert(1)</script></p>')
    assert frags[0].html_sanitized == "<p>a</p>"


@pytest.mark.parametrize(
    "html", ["", "  ", "<p> </p>", "<div><img src='https://e.com/a.png'></div>"]
)
def test_no_text_raises(html: str) -> None:
    with pytest.raises(ExtractionEmpty):
        split_fragments(html)


def test_article_fragments_cover_article_text() -> None:
    paras = "".join(
        f"<p>Paragraph {i}, with commas, words, and more words to make it count. " * 8 + "</p>"
        for i in range(60)
    )
    art = extract_article(f"<html><body><article>{paras}</article></body></html>", "https://e.com/")
    frags = art.fragments()
    assert len(frags) > 1
    assert "\n\n".join(f.canonical_text for f in frags) == art.text
