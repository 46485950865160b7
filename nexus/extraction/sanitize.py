"""Allow-list sanitising of article HTML for the reader (nh3 / ammonia).

Guarantees of `sanitize_html(html, base_url)`:
- only the tags in `ALLOWED_TAGS` survive; other tags are unwrapped (their text kept), except
  `DROPPED_WITH_CONTENT` (script, style, iframe, svg, ...) which go with everything inside;
- only the attributes in `ALLOWED_ATTRIBUTES` survive: no event handlers, no `style`, no
  `class`/`id`, no `srcset`;
- every `href` and `src` is resolved against `base_url` (the page URL, or its `<base href>`)
  and kept only when the result is `http`/`https` for links (plus `mailto`) and `https` for
  images; `javascript:`, `data:`, `vbscript:`, `file:` and anything unparsable are removed,
  whatever their case, embedded whitespace or entity encoding;
- every `<a>` carries `rel="noopener noreferrer"`; every `<img>` carries
  `referrerpolicy="no-referrer"` (the image host does not learn what the reader reads) and
  `loading="lazy"` (images load as the reader scrolls to them), whatever the page said;
- comments are removed. The function is idempotent on its own output.
"""

from __future__ import annotations

from functools import partial
from urllib.parse import urljoin, urlsplit

import nh3

ALLOWED_TAGS: frozenset[str] = frozenset(
    {
        "a", "abbr", "b", "bdi", "bdo", "blockquote", "br", "caption", "cite", "code", "col",
        "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em", "figcaption", "figure",
        "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark",
        "ol", "p", "pre", "q", "rp", "rt", "ruby", "s", "samp", "section", "small", "span",
        "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "time", "tr",
        "u", "ul", "var", "wbr",
    }
)  # fmt: skip
DROPPED_WITH_CONTENT: frozenset[str] = frozenset(
    {
        "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "svg",
        "math", "noscript", "template", "textarea", "select", "button", "head", "title",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "*": {"lang", "dir", "title"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "col": {"span"},
    "colgroup": {"span"},
    "ol": {"start", "reversed"},
    "time": {"datetime"},
}
LINK_SCHEMES = frozenset({"http", "https", "mailto"})
# Images load by themselves when a fragment is shown: https only (no mixed content, no
# reading habits readable on the wire).
IMAGE_SCHEMES = frozenset({"https"})
IMAGE_ATTRIBUTES = {"referrerpolicy": "no-referrer", "loading": "lazy"}
# ammonia appends the attributes it sets in hash-map order, which varies from call to call.
# This exact text can only be the end of an <img> tag: in attribute values `"` is escaped,
# in text `>` is. Putting it in one order keeps the output deterministic and idempotent.
_SET_ATTRIBUTES_SWAPPED = ' loading="lazy" referrerpolicy="no-referrer">'
_SET_ATTRIBUTES = ' referrerpolicy="no-referrer" loading="lazy">'
_URL_ATTRIBUTES = {"href": LINK_SCHEMES, "src": IMAGE_SCHEMES}
# Browsers ignore these inside URLs, so "java\tscript:" is still javascript:.
_URL_NOISE = str.maketrans("", "", "\t\n\r\x00")


def safe_url(value: str, base_url: str, schemes: frozenset[str]) -> str | None:
    """`value` made absolute against `base_url`, or None unless its scheme is in `schemes`."""
    cleaned = value.translate(_URL_NOISE).strip(" \x0c\x0b\x1f\x01\x02\x03\x04\x05\x06\x07\x08")
    if not cleaned:
        return None
    try:
        absolute = urljoin(base_url, cleaned) if base_url else cleaned
        parts = urlsplit(absolute)
    except ValueError:
        return None
    if parts.scheme.lower() not in schemes:
        return None
    if parts.scheme.lower() != "mailto" and not parts.netloc:
        return None
    return absolute


def _filter_attribute(base_url: str, tag: str, attribute: str, value: str) -> str | None:
    schemes = _URL_ATTRIBUTES.get(attribute)
    if schemes is None:
        return value
    if tag == "img" and attribute == "href":
        return None
    return safe_url(value, base_url, schemes)


def sanitize_html(html: str, base_url: str = "") -> str:
    """Clean `html` (a fragment) per the module guarantees; `base_url` resolves relative URLs."""
    cleaned = nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(DROPPED_WITH_CONTENT),
        attributes={k: set(v) for k, v in ALLOWED_ATTRIBUTES.items()},
        attribute_filter=partial(_filter_attribute, base_url),
        strip_comments=True,
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"img": dict(IMAGE_ATTRIBUTES)},
        url_schemes=set(LINK_SCHEMES),
    )
    return cleaned.replace(_SET_ATTRIBUTES_SWAPPED, _SET_ATTRIBUTES)
