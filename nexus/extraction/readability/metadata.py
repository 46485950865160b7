"""Title, byline and friends from JSON-LD, <meta> tags and the <title> element.

Precedence: a schema.org article in JSON-LD, then Dublin Core / Open Graph / Twitter /
Parse.ly meta tags, then a cleaned-up <title> (site names after a separator dropped,
compared against the page's headings).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from lxml.html import HtmlElement

from nexus.extraction.readability import dom
from nexus.extraction.readability import patterns as pt

_SEPARATORS = r"\|\-\u2013\u2014\\/>\u00bb"
_SEPARATOR = re.compile(rf"\s[{_SEPARATORS}]\s")
_HIERARCHICAL = re.compile(r"\s[\\/>\u00bb]\s")
_LEADING_PART = re.compile(rf"^[^{_SEPARATORS}]*[{_SEPARATORS}]")
_PROPERTY = re.compile(
    r"\s*(article|dc|dcterm|og|twitter)\s*:\s*"
    r"(author|creator|description|published_time|title|site_name)\s*",
    re.I,
)
_NAME = re.compile(
    r"^\s*(?:(dc|dcterm|og|twitter|parsely|weibo:(article|webpage))\s*[-.:]\s*)?"
    r"(author|creator|pub-date|description|title|site_name)\s*$",
    re.I,
)
_SCHEMA_ORG = re.compile(r"^https?://schema\.org/?$")
_CDATA = re.compile(r"^\s*<!\[CDATA\[|\]\]>\s*$")
_ENTITY = re.compile(r"&(quot|amp|apos|lt|gt);|&#(?:x([0-9a-f]+)|([0-9]+));", re.I)
_NAMED = {"quot": '"', "amp": "&", "apos": "'", "lt": "<", "gt": ">"}


@dataclass
class Metadata:
    title: str | None = None
    byline: str | None = None
    excerpt: str | None = None
    site_name: str | None = None
    published_time: str | None = None


def document_title(doc: HtmlElement) -> str:
    node = next(doc.iter("title"), None)
    if node is None:
        return ""
    return " ".join(node.text_content().split())


def _wc(text: str) -> int:
    return dom.word_count(text)


def article_title(doc: HtmlElement) -> str:
    """The <title>, minus a site name hanging off a separator or colon when that looks safe."""
    original = document_title(doc)
    title = original
    hierarchical = False
    separators = list(_SEPARATOR.finditer(title))
    if separators:
        hierarchical = bool(_HIERARCHICAL.search(title))
        title = original[: separators[-1].start()]
        if _wc(title) < 3:
            title = _LEADING_PART.sub("", original)
    elif ": " in title:
        if not any(h.text_content().strip() == title.strip() for h in doc.iter("h1", "h2")):
            title = original[original.rfind(":") + 1 :]
            if _wc(title) < 3:
                title = original[original.find(":") + 1 :]
            elif _wc(original[: original.find(":")]) > 5:
                title = original
    elif len(title) > 150 or len(title) < 15:
        h1s = list(doc.iter("h1"))
        if len(h1s) == 1:
            title = dom.inner_text(h1s[0])
    title = pt.SPACES.sub(" ", title.strip())
    words = _wc(title)
    if words <= 4 and (not hierarchical or words != _wc(_SEPARATOR.sub(" ", original)) - 1):
        title = original
    return title


def unescape_entities(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        if m.group(1):
            return _NAMED[m.group(1).lower()]
        code = int(m.group(2), 16) if m.group(2) else int(m.group(3))
        try:
            return chr(code) if code and code <= 0x10FFFF else "\ufffd"
        except ValueError:
            return "\ufffd"

    return _ENTITY.sub(repl, text)


def _is_article_type(value: Any) -> bool:
    return pt.is_article_type(value)


def _pick_article(parsed: Any) -> dict[str, Any] | None:
    if isinstance(parsed, list):
        parsed = next(
            (i for i in parsed if isinstance(i, dict) and _is_article_type(i.get("@type"))), None
        )
    if not isinstance(parsed, dict):
        return None
    context = parsed.get("@context")
    if isinstance(context, dict):
        context = context.get("@vocab")
    if not (isinstance(context, str) and _SCHEMA_ORG.match(context)):
        return None
    if "@type" not in parsed and isinstance(parsed.get("@graph"), list):
        graph = parsed["@graph"]
        parsed = next(
            (i for i in graph if isinstance(i, dict) and _is_article_type(i.get("@type"))), None
        )
    if not isinstance(parsed, dict) or not _is_article_type(parsed.get("@type")):
        return None
    return parsed


def _jsonld_title(doc: HtmlElement, article: dict[str, Any]) -> str | None:
    name, headline = article.get("name"), article.get("headline")
    if isinstance(name, str) and isinstance(headline, str) and name != headline:
        fallback = article_title(doc)
        name_ok = dom.text_similarity(name, fallback) > 0.75
        headline_ok = dom.text_similarity(headline, fallback) > 0.75
        return headline if headline_ok and not name_ok else name
    if isinstance(name, str):
        return name.strip()
    if isinstance(headline, str):
        return headline.strip()
    return None


def _jsonld_author(author: Any) -> str | None:
    if isinstance(author, dict) and isinstance(author.get("name"), str):
        return str(author["name"]).strip()
    if isinstance(author, list) and author and isinstance(author[0], dict):
        names = [
            a["name"].strip()
            for a in author
            if isinstance(a, dict) and isinstance(a.get("name"), str)
        ]
        return ", ".join(names) if names else None
    return None


def from_jsonld(doc: HtmlElement) -> Metadata:
    """Metadata of the first schema.org article in a JSON-LD script (call before scripts go)."""
    for script in doc.iter("script"):
        if script.get("type") != "application/ld+json":
            continue
        try:
            parsed = json.loads(_CDATA.sub("", script.text_content()))
        except ValueError:
            continue
        article = _pick_article(parsed)
        if article is None:
            continue
        publisher = article.get("publisher")
        site = publisher.get("name") if isinstance(publisher, dict) else None
        published = article.get("datePublished")
        description = article.get("description")
        return Metadata(
            title=_jsonld_title(doc, article),
            byline=_jsonld_author(article.get("author")),
            excerpt=description.strip() if isinstance(description, str) else None,
            site_name=site.strip() if isinstance(site, str) else None,
            published_time=published.strip() if isinstance(published, str) else None,
        )
    return Metadata()


def _meta_values(doc: HtmlElement) -> dict[str, str]:
    values: dict[str, str] = {}
    for meta in doc.iter("meta"):
        content = meta.get("content")
        if not content:
            continue
        prop, name = meta.get("property"), meta.get("name")
        found = _PROPERTY.search(prop) if prop else None
        if found:
            values[re.sub(r"\s", "", found.group(0).lower())] = content.strip()
        elif name and _NAME.search(name):
            key = re.sub(r"\s", "", name.lower()).replace(".", ":")
            values[key] = content.strip()
    return values


def _first(values: dict[str, str], *keys: str) -> str | None:
    for key in keys:
        if values.get(key):
            return values[key]
    return None


def collect(doc: HtmlElement, jsonld: Metadata) -> Metadata:
    values = _meta_values(doc)
    title = jsonld.title or _first(
        values, "dc:title", "dcterm:title", "og:title", "weibo:article:title",
        "weibo:webpage:title", "title", "twitter:title", "parsely-title",
    )  # fmt: skip
    if not title:
        title = article_title(doc)
    author = values.get("article:author")
    if author and re.match(r"^https?://", author):
        author = None
    byline = jsonld.byline or _first(
        values, "dc:creator", "dcterm:creator", "author", "parsely-author"
    )
    byline = byline or author
    excerpt = jsonld.excerpt or _first(
        values, "dc:description", "dcterm:description", "og:description",
        "weibo:article:description", "weibo:webpage:description", "description",
        "twitter:description",
    )  # fmt: skip
    site = jsonld.site_name or values.get("og:site_name")
    published = jsonld.published_time or _first(
        values, "article:published_time", "parsely-pub-date"
    )
    return Metadata(
        title=unescape_entities(title) if title else None,
        byline=unescape_entities(byline) if byline else None,
        excerpt=unescape_entities(excerpt) if excerpt else None,
        site_name=unescape_entities(site) if site else None,
        published_time=published,
    )
