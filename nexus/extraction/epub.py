"""EPUB extraction (zipfile + lxml): one fragment per spine document with text (SPEC §8).

Contract of `extract_epub(data, sanitize, canonical_text)` (synchronous, CPU-bound):

- not a ZIP at all → `TerminalError(E_INVALID_FILE_TYPE)`; a ZIP that is not a readable
  EPUB (corrupt archive, no `META-INF/container.xml`, no/invalid package document, empty
  spine, DRM-encrypted content documents) → `E_EXTRACTION_FAILED`;
- no spine document with letters or digits (e.g. fixed-layout, images only) →
  `E_EXTRACTION_EMPTY`.

Reading order: the spine's linear items in order, then the `linear="no"` items (notes,
covers, pop-ups) in spine order, so content reachable only by links is still readable and
searchable without interrupting the main text. Only XHTML/HTML items are read; other
spine items (SVG, images) are skipped, as are documents without text. `idx` counts the
emitted fragments from 0.

Each document's `<body>` is reduced to plain HTML before `sanitize(html, base_url)`:
namespaces dropped (`epub:type` etc.), scripts/styles removed, in-book links rewritten to
their `#fragment` (or unlinked), in-book images removed (the files stay in the stored
EPUB; the fragments never point into it). `canonical_text(sanitized_html)` gives the text.

Hostile input: XML is parsed without DTDs, entity expansion or network access; member
reads are size-capped, so a zip bomb fails with `E_EXTRACTION_FAILED`.
"""

from __future__ import annotations

import html as html_lib
import io
import logging
import posixpath
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import lxml.html
from lxml import etree

from nexus.errors import TerminalError
from nexus.extraction import filetypes
from nexus.extraction.documents import DocumentResult, Fragment, clean_title, has_words
from nexus.extraction.filetypes import decode_html

log = logging.getLogger(__name__)

Sanitize = Callable[[str, str], str]
CanonicalText = Callable[[str], str]

MAX_MEMBER_BYTES = 32 * 1024 * 1024
MAX_TOTAL_BYTES = 256 * 1024 * 1024
MAX_ENTRIES = 10_000
_DOC_TYPES = frozenset({"application/xhtml+xml", "text/html"})
_OPF_TYPE = "application/oebps-package+xml"
# Font obfuscation is not DRM: the text stays readable.
_FONT_OBFUSCATION = frozenset(
    {"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"}
)
_DROP = ("script", "style", "noscript", "template", "iframe", "object", "embed", "head")
_XML = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_pis=True
)
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")
_HTML = lxml.html.HTMLParser(no_network=True, remove_pis=True)


@dataclass(frozen=True)
class _Item:
    path: str
    media_type: str


def extract_epub(
    data: bytes, sanitize: Sanitize, canonical_text: CanonicalText, *, base_url: str = ""
) -> DocumentResult:
    """Title and spine fragments of an EPUB. See the module docstring for the contract.

    `base_url` is handed to `sanitize`; the default keeps in-book `#anchor` links relative.
    """
    if not filetypes.is_zip(data):
        raise TerminalError("E_INVALID_FILE_TYPE", "not an EPUB file (not a ZIP archive)")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise _failed(f"corrupt archive: {exc}") from None
    with archive:
        book = _Book(archive)
        opf_path = book.rootfile()
        package = book.parse_xml(opf_path)
        book.refuse_drm()
        spine = _spine(package, posixpath.dirname(opf_path))
        fragments: list[Fragment] = []
        for item in spine:
            html = book.body_html(item)
            if html is None:
                continue
            sanitized = sanitize(html, base_url)
            text = canonical_text(sanitized)
            if has_words(text):
                fragments.append(Fragment(len(fragments), sanitized, text))
    if not fragments:
        raise TerminalError("E_EXTRACTION_EMPTY", "the EPUB has no text (images only?)")
    return DocumentResult(title=_title(package), fragments=fragments)


def _failed(reason: str) -> TerminalError:
    return TerminalError("E_EXTRACTION_FAILED", f"unreadable EPUB: {reason}"[:500])


class _Book:
    def __init__(self, archive: zipfile.ZipFile) -> None:
        self._zip = archive
        self._read_total = 0
        self._names = frozenset(archive.namelist())
        if len(archive.infolist()) > MAX_ENTRIES:
            raise _failed("too many entries")

    def read(self, path: str) -> bytes:
        try:
            info = self._zip.getinfo(path)
        except KeyError:
            raise _failed(f"missing {path}") from None
        if info.file_size > MAX_MEMBER_BYTES:
            raise _failed(f"{path} is too large")
        try:
            with self._zip.open(info) as member:
                content = member.read(MAX_MEMBER_BYTES + 1)
        except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError) as exc:
            raise _failed(f"{path}: {exc}") from None
        self._read_total += len(content)
        if len(content) > MAX_MEMBER_BYTES or self._read_total > MAX_TOTAL_BYTES:
            raise _failed("content too large")
        return content

    def parse_xml(self, path: str) -> etree._Element:
        try:
            return etree.fromstring(self.read(path), parser=_XML)
        except etree.XMLSyntaxError as exc:
            raise _failed(f"{path} is not well-formed: {exc}") from None

    def rootfile(self) -> str:
        container = self.parse_xml("META-INF/container.xml")
        rootfiles = container.xpath("//*[local-name()='rootfile'][@full-path]")
        preferred = [r for r in rootfiles if r.get("media-type") == _OPF_TYPE] or rootfiles
        if not preferred:
            raise _failed("container.xml names no package document")
        return unquote(str(preferred[0].get("full-path"))).lstrip("/")

    def refuse_drm(self) -> None:
        if "META-INF/encryption.xml" not in self._names:
            return
        encryption = self.parse_xml("META-INF/encryption.xml")
        methods = encryption.xpath("//*[local-name()='EncryptionMethod']/@Algorithm")
        if any(str(m) not in _FONT_OBFUSCATION for m in methods):
            raise _failed("the content is encrypted (DRM)")

    def body_html(self, item: _Item) -> str | None:
        """Plain-HTML inner content of the document's body, or None when it has no text."""
        if item.path not in self._names:
            log.info("epub: spine item %s is missing", item.path)
            return None
        raw = self.read(item.path)
        body = _parse_body(raw)
        if body is None:
            return None
        _simplify(body)
        if not has_words(body.text_content()):
            return None
        parts = [html_lib.escape(body.text, quote=False)] if body.text else []
        parts += [lxml.html.tostring(child, encoding="unicode") for child in body]
        return "".join(parts)


def _parse_body(raw: bytes) -> lxml.html.HtmlElement | None:
    try:
        # Well-formed XHTML: serialised back to text and read as HTML elements.
        markup = etree.tostring(etree.fromstring(raw, parser=_XML), encoding="unicode")
    except etree.XMLSyntaxError:
        # XHTML relying on HTML named entities (&nbsp;) or otherwise not well-formed.
        markup = _XML_DECL.sub("", decode_html(raw, None)[0], count=1)
    try:
        root = lxml.html.document_fromstring(markup, _HTML)
    except (etree.ParserError, ValueError):
        return None
    bodies = root.xpath("//*[local-name()='body']")
    return bodies[0] if bodies else None


def _simplify(body: lxml.html.HtmlElement) -> None:
    _drop_namespaces(body)
    for el in list(body.iter(*_DROP)):
        el.drop_tree()
    for el in list(body.iter("img", "image", "video", "audio", "source")):
        if not _is_external(el.get("src") or el.get("href") or ""):
            el.drop_tree()
    for a in body.iter("a"):
        href = a.get("href")
        if href is None or _is_external(href):
            continue
        fragment = urlsplit(href).fragment
        if fragment:
            a.set("href", f"#{fragment}")
        else:
            del a.attrib["href"]


def _drop_namespaces(body: lxml.html.HtmlElement) -> None:
    """Plain HTML names: `epub:type` and other namespaced attributes go, `xml:lang` → `lang`."""
    for el in list(body.iter()):
        if not isinstance(el.tag, str):  # comments, processing instructions
            if el.getparent() is not None:
                el.drop_tree()
            continue
        el.tag = etree.QName(el).localname.lower()
        for name in list(el.attrib):
            value = el.attrib.pop(name)
            if ":" in name or name.startswith("{"):
                local = etree.QName(name).localname if name.startswith("{") else name
                if local.split(":")[-1] != "lang":
                    continue
                name = "lang"
            el.attrib[name] = value


def _is_external(url: str) -> bool:
    scheme = urlsplit(url.strip()).scheme.lower()
    return scheme in ("http", "https", "mailto")


def _spine(package: etree._Element, base: str) -> list[_Item]:
    manifest: dict[str, _Item] = {}
    for item in package.xpath("//*[local-name()='manifest']/*[local-name()='item']"):
        href, item_id = item.get("href"), item.get("id")
        if not href or not item_id:
            continue
        path = posixpath.normpath(posixpath.join(base, unquote(urlsplit(href).path)))
        manifest[item_id] = _Item(path.lstrip("/"), (item.get("media-type") or "").lower())
    itemrefs = package.xpath("//*[local-name()='spine']/*[local-name()='itemref']")
    if not itemrefs:
        raise _failed("the spine is empty")
    linear: list[_Item] = []
    auxiliary: list[_Item] = []
    for ref in itemrefs:
        item = manifest.get(ref.get("idref") or "")
        if item is None or item.media_type not in _DOC_TYPES:
            continue
        (auxiliary if (ref.get("linear") or "").strip() == "no" else linear).append(item)
    return linear + auxiliary


def _title(package: etree._Element) -> str | None:
    """`dc:title` refined as `title-type main` if present, else the first `dc:title`."""
    titles = package.xpath("//*[local-name()='metadata']/*[local-name()='title']")
    main_ids = {
        str(m.get("refines", "")).lstrip("#")
        for m in package.xpath("//*[local-name()='meta'][@property='title-type']")
        if (m.text or "").strip() == "main"
    }
    ordered = [t for t in titles if t.get("id") in main_ids] + list(titles)
    for element in ordered:
        title = clean_title("".join(element.itertext()))
        if title:
            return title
    return None
