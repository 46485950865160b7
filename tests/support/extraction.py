"""Our article extractor in the shape the shared scorer takes: (text, title)."""

from __future__ import annotations

from nexus.extraction.article import ExtractionEmpty, extract_article


def text_and_title(html: str, url: str) -> tuple[str, str]:
    """What extraction keeps of a page; an empty page is ("", "")."""
    try:
        article = extract_article(html, url)
    except ExtractionEmpty:
        return "", ""
    return article.text, article.title or ""
