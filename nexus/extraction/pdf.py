"""PDF text extraction with pypdf: one fragment per page that has text (SPEC §8).

Contract of `extract_pdf(data)` (synchronous and CPU-bound: callers run it in a worker
thread or process):

- bytes without a `%PDF-` header → `TerminalError(E_INVALID_FILE_TYPE)`;
- encrypted and not openable with the empty user password → `E_PDF_ENCRYPTED` (a PDF with
  only an owner password opens and is extracted);
- unparseable → `E_EXTRACTION_FAILED`;
- no page with letters or digits (scans, image-only files) → `E_EXTRACTION_EMPTY`.

Fragments: `idx` is the 0-based page index in the file, so it always points at the page the
text came from (pages without text are skipped, leaving gaps). `html` is `<p>` paragraphs
of escaped text (safe as stored); `text` is the canonical text (paragraphs separated by a
blank line, NFC, ligatures expanded). A page whose text layer decodes mostly to U+FFFD
(missing font maps) is treated as having no text.

Damaged page trees: when the page tree cannot be read, page objects are recovered from the
cross-reference table (file order). Such files yield what is readable.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from statistics import median
from typing import Any

from pypdf import PageObject, PasswordType, PdfReader
from pypdf.generic import DictionaryObject, IndirectObject

from nexus.errors import TerminalError
from nexus.extraction import filetypes
from nexus.extraction.documents import (
    DocumentResult,
    Fragment,
    clean_text,
    clean_title,
    has_words,
    paragraphs_html,
)

log = logging.getLogger(__name__)

_MAX_REPLACEMENT_RATIO = 0.3
_SENTENCE_END = (".", "!", "?", ":", "…", '."', ".”", "。", "؟")


def extract_pdf(
    data: bytes, *, canonical_text: Callable[[str], str] | None = None
) -> DocumentResult:
    """Title and per-page fragments of a PDF. See the module docstring for the contract.

    `canonical_text(html)`, when given, replaces the built-in canonical text so PDF text
    matches the web pipeline's definition exactly.
    """
    if not filetypes.is_pdf(data):
        raise TerminalError("E_INVALID_FILE_TYPE", "not a PDF file (no %PDF- header)")
    reader = _open(data)
    fragments: list[Fragment] = []
    failures = 0
    for index, page in _pages(reader):
        try:
            raw = page.extract_text() or ""
        except Exception as exc:  # pypdf raises many kinds on damaged content streams
            failures += 1
            log.info("pdf page %d: text extraction failed: %r", index, exc)
            continue
        paragraphs = split_paragraphs(raw)
        if not paragraphs:
            continue
        html = paragraphs_html(paragraphs)
        text = canonical_text(html) if canonical_text else "\n\n".join(paragraphs)
        fragments.append(Fragment(index, html, text))
    if not fragments:
        if failures:
            raise TerminalError("E_EXTRACTION_FAILED", "no page of the PDF could be read")
        raise TerminalError("E_EXTRACTION_EMPTY", "the PDF has no extractable text")
    return DocumentResult(title=_title(reader), fragments=fragments)


def _open(data: bytes) -> PdfReader:
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
    except Exception as exc:
        raise TerminalError("E_EXTRACTION_FAILED", f"unreadable PDF: {_reason(exc)}") from None
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("")
        except Exception as exc:  # unsupported security handler or algorithm
            raise TerminalError("E_PDF_ENCRYPTED", f"encrypted PDF: {_reason(exc)}") from None
        if opened == PasswordType.NOT_DECRYPTED:
            raise TerminalError("E_PDF_ENCRYPTED", "the PDF is protected by a password")
    return reader


def _pages(reader: PdfReader) -> Iterator[tuple[int, PageObject]]:
    try:
        pages = list(reader.pages)
    except Exception as exc:
        log.info("pdf page tree unreadable (%r); recovering page objects", exc)
        pages = _recover_pages(reader)
        if not pages:
            raise TerminalError(
                "E_EXTRACTION_FAILED", f"unreadable PDF page tree: {_reason(exc)}"
            ) from None
    yield from enumerate(pages)


def _recover_pages(reader: PdfReader) -> list[PageObject]:
    """Page objects found by walking the cross-reference table, in file order."""
    located: list[tuple[int, int, int]] = []
    for generation, objects in reader.xref.items():
        for number, offset in objects.items():
            located.append((offset, number, generation))
    pages: list[PageObject] = []
    for _offset, number, generation in sorted(located):
        ref = IndirectObject(number, generation, reader)
        try:
            obj = ref.get_object()
        except Exception:
            continue
        if isinstance(obj, DictionaryObject) and obj.get("/Type") == "/Page":
            page = PageObject(reader, ref)
            page.update(obj)
            pages.append(page)
    return pages


def _title(reader: PdfReader) -> str | None:
    try:
        info = reader.metadata
        title = clean_title(info.title if info else None)
        if title:
            return title
    except Exception:
        log.info("pdf: unreadable document information dictionary")
    try:
        xmp = reader.xmp_metadata
        titles: Any = xmp.dc_title if xmp else None
        if isinstance(titles, dict):
            return clean_title(titles.get("x-default") or next(iter(titles.values()), None))
    except Exception:
        log.info("pdf: unreadable XMP metadata")
    return None


def split_paragraphs(raw: str) -> list[str]:
    """Paragraphs of a page's text layer.

    Blank lines always separate paragraphs. Otherwise a line ends a paragraph when it ends
    a sentence and is clearly shorter than the page's typical line. Lines are joined with a
    space; a hyphen at a line end followed by a lower-case letter is taken as a word break.
    """
    text = clean_text(raw)
    if not has_words(text) or _mostly_replacement(text):
        return []
    lines = [line.strip() for line in text.split("\n")]
    widths = [len(line) for line in lines if line]
    typical = median(widths) if widths else 0
    paragraphs: list[str] = []
    current = ""
    for line in lines:
        if not line:
            current = _flush(paragraphs, current)
            continue
        if current.endswith("-") and line[:1].islower() and current[-2:-1].isalpha():
            current = current[:-1] + line
        else:
            current = f"{current} {line}" if current else line
        if line.endswith(_SENTENCE_END) and len(line) < 0.8 * typical:
            current = _flush(paragraphs, current)
    _flush(paragraphs, current)
    return [p for p in paragraphs if has_words(p)]


def _flush(paragraphs: list[str], current: str) -> str:
    if current.strip():
        paragraphs.append(current.strip())
    return ""


def _mostly_replacement(text: str) -> bool:
    visible = [ch for ch in text if not ch.isspace()]
    bad = sum(1 for ch in visible if ch == "\ufffd")
    return bool(visible) and bad / len(visible) > _MAX_REPLACEMENT_RATIO


def _reason(exc: BaseException) -> str:
    return (f"{type(exc).__name__}: {exc}")[:300]
