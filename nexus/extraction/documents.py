"""Results of document extraction (PDF, EPUB) and the text helpers they share.

A `DocumentResult` is what the ingest worker stores: a title (None when the file has none)
and fragments in reading order. `Fragment` is a named tuple, so `for idx, html, text in
result.fragments` works; `html` is safe to store as `fragments.html_sanitized` and `text` as
`fragments.canonical_text`.
"""

from __future__ import annotations

import html as html_lib
import re
import unicodedata
from dataclasses import dataclass
from typing import NamedTuple

# Latin presentation ligatures (ﬁ, ﬂ, ...) that PDF text layers keep; readers search for
# the letters. Expanded explicitly rather than with NFKC, which would also rewrite
# superscripts, full-width forms and other characters that carry meaning.
_LIGATURES = str.maketrans(
    {"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"}
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\xad\u200b\ufeff]")
_SPACES = re.compile(r"[^\S\n]+")


class Fragment(NamedTuple):
    idx: int
    html: str
    text: str


@dataclass(frozen=True)
class DocumentResult:
    title: str | None
    fragments: list[Fragment]


def clean_text(text: str) -> str:
    """NFC, ligatures expanded, controls and soft hyphens dropped, spaces collapsed."""
    text = _CONTROL.sub("", text.translate(_LIGATURES))
    text = unicodedata.normalize("NFC", text)
    return _SPACES.sub(" ", text)


def has_words(text: str) -> bool:
    """True when the text contains at least one letter or digit (any script)."""
    return any(ch.isalnum() for ch in text)


def clean_title(value: object) -> str | None:
    """A metadata title fit to show, or None (empty, placeholder or not a string)."""
    if not isinstance(value, str):
        return None
    title = " ".join(clean_text(value).split())
    if not has_words(title) or title.casefold() in ("untitled", "untitled document"):
        return None
    return title[:1000]


def paragraphs_html(paragraphs: list[str]) -> str:
    return "".join(f"<p>{html_lib.escape(p, quote=False)}</p>" for p in paragraphs)
