"""extract_article: content choice, metadata, links, empties."""

from __future__ import annotations

import json

import pytest

from nexus.errors import TerminalError
from nexus.extraction.article import Article, ExtractionEmpty, extract_article

PARA = (
    "This is a long paragraph of article text, with commas, clauses, and enough words to be "
    "scored as real content by the extractor, which wants length and punctuation. "
)


def page(body: str, head: str = "<title>A fine title for the test page</title>") -> str:
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"


def article_body(n: int = 5) -> str:
    paras = "".join(f"<p>{PARA * 2} Paragraph {i}.</p>" for i in range(n))
    return f'<div class="article-body">{paras}</div>'


NAV = (
    '<div class="sidebar"><ul>'
    + "".join(f'<li><a href="/n{i}">Navigation link {i}</a></li>' for i in range(20))
    + "</ul></div>"
)
COMMENTS = '<div id="comments"><p>Nice post! Spam spam spam, buy now, click here.</p></div>'


def test_keeps_article_drops_navigation_and_comments() -> None:
    art = extract_article(
        page(NAV + article_body() + COMMENTS + "<footer>© corp</footer>"), "https://e.com/"
    )
    assert "Paragraph 0." in art.text and "Paragraph 4." in art.text
    assert "Navigation link" not in art.text
    assert "Spam" not in art.text
    assert "corp" not in art.text


def test_hidden_nodes_are_dropped() -> None:
    hidden = (
        '<p style="display: none">HIDDEN1 words words words words words words.</p>'
        "<p hidden>HIDDEN2 words words words words words words words.</p>"
        '<p aria-hidden="true">HIDDEN3 words words words words words words.</p>'
    )
    art = extract_article(
        page(f'<div class="content">{hidden}{article_body()}</div>'), "https://e.com/"
    )
    assert "HIDDEN" not in art.text


def test_result_is_sanitised_and_links_absolute() -> None:
    body = (
        '<div class="post">'
        f'<p onclick="steal()">{PARA}<a href="/more" onmouseover="x()">more</a>'
        '<a href="javascript:alert(1)">bad</a><img src="pic.png" onerror="x()"></p>'
        f"<p>{PARA * 3}</p><script>alert(1)</script><p>{PARA * 3}</p></div>"
    )
    art = extract_article(page(body), "https://e.com/dir/page")
    assert 'href="https://e.com/more" rel="noopener noreferrer"' in art.content_html
    assert 'src="https://e.com/dir/pic.png"' in art.content_html
    for bad in ("onclick", "onmouseover", "onerror", "javascript", "<script", "alert"):
        assert bad not in art.content_html


def test_base_href_is_respected() -> None:
    head = '<title>A fine title for the test page</title><base href="https://cdn.e.org/base/">'
    body = f'<div class="post"><p>{PARA * 3}<a href="x.html">x</a></p><p>{PARA * 3}</p></div>'
    art = extract_article(page(body, head), "https://e.com/dir/page")
    assert 'href="https://cdn.e.org/base/x.html"' in art.content_html


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("How We Built The Thing That Works | Example Site", "How We Built The Thing That Works"),
        ("How We Built The Thing That Works - Example Site", "How We Built The Thing That Works"),
        (
            "How We Built The Thing That Works \u2013 Example Site",
            "How We Built The Thing That Works",
        ),
        # A breadcrumb whose leading part is short is kept whole rather than guessed at.
        ("Site » Guides » How We Built The Thing", "Site » Guides » How We Built The Thing"),
        (
            "How We Built The Thing That Works / Guides / Site",
            "How We Built The Thing That Works / Guides",
        ),
        ("News: How We Built The Thing That Works Well", "How We Built The Thing That Works Well"),
        ("Short | Site", "Short | Site"),
    ],
)
def test_title_separator_heuristics(title: str, expected: str) -> None:
    art = extract_article(page(article_body(), f"<title>{title}</title>"), "https://e.com/")
    assert art.title == expected


def test_meta_titles_win_over_title_element() -> None:
    head = (
        '<title>Ignored | Site</title><meta property="og:title" content="The OG title">'
        '<meta name="twitter:title" content="Twitter title">'
        '<meta name="author" content="Ada Lovelace">'
    )
    art = extract_article(page(article_body(), head), "https://e.com/")
    assert art.title == "The OG title"
    assert art.byline == "Ada Lovelace"


def test_json_ld_article_wins() -> None:
    ld = {
        "@context": "https://schema.org",
        "@type": "NewsArticle",
        "headline": "Headline from JSON-LD",
        "author": [{"@type": "Person", "name": "A. Writer"}, {"name": "B. Writer"}],
        "publisher": {"name": "The Paper"},
        "datePublished": "2024-01-02T03:04:05Z",
    }
    head = (
        '<title>Other | Site</title><meta property="og:title" content="OG">'
        f'<script type="application/ld+json">{json.dumps(ld)}</script>'
    )
    art = extract_article(page(article_body(), head), "https://e.com/")
    assert art.title == "Headline from JSON-LD"
    assert art.byline == "A. Writer, B. Writer"
    assert art.site_name == "The Paper"
    assert art.published_time == "2024-01-02T03:04:05Z"


def test_broken_json_ld_is_ignored() -> None:
    head = (
        "<title>A fine title for the test page</title>"
        '<script type="application/ld+json">{not json</script>'
        '<script type="application/ld+json">{"@context": "https://example.org", '
        '"@type": "Article", "headline": "wrong context"}</script>'
    )
    art = extract_article(page(article_body(), head), "https://e.com/")
    assert art.title == "A fine title for the test page"


def test_byline_node_is_taken_out_of_the_text() -> None:
    body = f'<div class="post"><p class="byline">By Jane Doe</p>{article_body()}</div>'
    art = extract_article(page(body), "https://e.com/")
    assert art.byline == "By Jane Doe"
    assert "Jane Doe" not in art.text


def test_heading_duplicating_title_is_dropped() -> None:
    body = f"<h1>A fine title for the test page</h1>{article_body()}"
    art = extract_article(page(body), "https://e.com/")
    assert art.text.startswith("This is a long paragraph")


def test_short_page_falls_back_to_what_there_is() -> None:
    art = extract_article(page('<div class="comment">Just one short line.</div>'), "https://e.com/")
    assert art.text == "Just one short line."


@pytest.mark.parametrize(
    "html",
    [
        "",
        "   ",
        "<html><head><title>Only a title</title></head><body></body></html>",
        "<html><body><script>document.write('x')</script><style>p{}</style></body></html>",
        '<html><body><img src="a.png"><iframe src="x"></iframe></body></html>',
        "<frameset><frame src='a.html'></frameset>",
    ],
)
def test_nothing_readable_raises_extraction_empty(html: str) -> None:
    with pytest.raises(ExtractionEmpty) as info:
        extract_article(html, "https://e.com/")
    assert isinstance(info.value, TerminalError)
    assert info.value.code == "E_EXTRACTION_EMPTY"


@pytest.mark.parametrize(
    "html",
    [
        "\x00\x01\x02 binary-ish junk \ufffe\udcff text",
        '<?xml version="1.0" encoding="utf-8"?><html><body><p>xml prolog text</p></body></html>',
        "<p>unclosed <b>bold <i>italic <table><td>cell",
        "plain text without markup",
    ],
)
def test_junk_input_does_not_crash(html: str) -> None:
    art = extract_article(html, "https://e.com/")
    assert isinstance(art, Article)
    assert art.text


def test_deterministic() -> None:
    html = page(NAV + article_body(8) + COMMENTS)
    first = extract_article(html, "https://e.com/")
    assert all(extract_article(html, "https://e.com/") == first for _ in range(3))


def test_text_is_nfc() -> None:
    decomposed = "Cafe\u0301 " * 40
    art = extract_article(
        page(f'<div class="post"><p>{decomposed}, {PARA * 3}</p></div>'), "https://e.com/"
    )
    assert "Caf\u00e9" in art.text
    assert "\u0301" not in art.text
