"""The scorer's vocabulary: class names and ids read as words, not substrings."""

from __future__ import annotations

import lxml.html
import pytest

from nexus.extraction.readability import dom
from nexus.extraction.readability import patterns as pt


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("articleBody", "article body"),
        ("post__share-bar", "post share bar"),
        ("  Main_Content  sidebar2 ", "main content sidebar2"),
        ("", ""),
    ],
)
def test_names_are_split_into_words(value: str, expected: str) -> None:
    assert pt.words(value) == expected


@pytest.mark.parametrize(
    "name",
    [
        "sidebar", "site-footer", "comments", "fbcommentsmodule", "megamenu", "ad", "ad-slot",
        "advertisement", "related-posts", "newsletter-signup", "cookie-banner", "breadcrumbs",
        "video-player", "image-gallery",
    ],
)  # fmt: skip
def test_boilerplate_names_are_unlikely(name: str) -> None:
    assert pt.UNLIKELY.search(name)


@pytest.mark.parametrize("name", ["socialshare", "share-tools", "sharedaddy", "followUs"])
def test_share_widgets_weigh_against_without_being_removed_unseen(name: str) -> None:
    # Share plugins put their class on the element holding the buttons: often the
    # article's own container. So sharing words weigh, and only small bars are removed.
    assert pt.SHARE.search(name) and pt.NEGATIVE.search(name)
    assert not pt.UNLIKELY.search(name)


@pytest.mark.parametrize(
    "name",
    [
        # Substrings of boilerplate words inside ordinary words do not count.
        "loader", "shadow", "thread", "download", "headline", "brand", "leading",
        "commentary", "history", "readability", "", "   ",
    ],
)  # fmt: skip
def test_words_that_only_contain_boilerplate_letters_do_not_count(name: str) -> None:
    assert not pt.UNLIKELY.search(name)
    assert not pt.NEGATIVE.search(name)


def test_article_words_weigh_for_and_protect() -> None:
    assert pt.POSITIVE.search("entry-content") and pt.POSITIVE.search("maincontent")
    assert pt.MAYBE_CANDIDATE.search("article-footer")
    assert not pt.POSITIVE.search("history")  # "story" starts words, it does not end them
    assert dom.class_weight(lxml.html.fromstring('<div class="post-body" id="comments">')) == 0


def test_an_id_that_is_its_headings_slug_is_not_a_component_name() -> None:
    section = lxml.html.fromstring(
        '<div id="sharing-with-a-team"><h2>Sharing with a team</h2><p>t</p></div>'
    )
    widget = lxml.html.fromstring('<div id="share-tools"><h2>Sharing with a team</h2></div>')
    assert dom.component_id(section) == "" and dom.class_weight(section) == 0
    assert dom.component_id(widget) == "share-tools" and dom.class_weight(widget) < 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("NewsArticle", True),
        ("Article", True),
        ("BlogPosting", True),
        (["WebPage", "ReportageNewsArticle"], True),
        ("schema:TechArticle", True),
        ("https://schema.org/Report", True),
        ("WebPage", False),
        ("Articles", False),
        (None, False),
        (["Person"], False),
    ],
)
def test_jsonld_article_types_by_rule(value: object, expected: bool) -> None:
    assert pt.is_article_type(value) is expected
