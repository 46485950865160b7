"""What bytes are: magic bytes of documents, HTTP content types, HTML charsets (pure).

- PDF: `%PDF-` at the start of the file. ISO 32000 readers tolerate up to 1024 bytes of junk
  before the header (some generators prepend a BOM or whitespace), so we do too.
- EPUB (OCF 3.0 §4.3): a ZIP whose *first* local file entry is named `mimetype`, stored,
  and contains exactly `application/epub+zip`. This is checked on the raw bytes of the local
  file header, so it needs only the first ~60 bytes and never parses the archive.
"""

from __future__ import annotations

import codecs
import re
import struct
from typing import Literal

import webencodings

from nexus.errors import TerminalError

DocumentKind = Literal["pdf", "epub"]

PDF_MAGIC = b"%PDF-"
PDF_HEADER_WINDOW = 1024
EPUB_MIMETYPE = b"application/epub+zip"
ZIP_LOCAL_HEADER = b"PK\x03\x04"
_ZIP_HEADER_LEN = 30


def is_pdf(data: bytes) -> bool:
    return PDF_MAGIC in data[:PDF_HEADER_WINDOW]


def is_zip(data: bytes) -> bool:
    return data[:4] == ZIP_LOCAL_HEADER


def is_epub(data: bytes) -> bool:
    """True when the first ZIP entry is an uncompressed `mimetype` = `application/epub+zip`."""
    if len(data) < _ZIP_HEADER_LEN or not is_zip(data):
        return False
    (method, size, name_len, extra_len) = (
        struct.unpack_from("<H", data, 8)[0],
        struct.unpack_from("<I", data, 22)[0],
        struct.unpack_from("<H", data, 26)[0],
        struct.unpack_from("<H", data, 28)[0],
    )
    name = data[_ZIP_HEADER_LEN : _ZIP_HEADER_LEN + name_len]
    if name != b"mimetype" or method != 0:
        return False
    start = _ZIP_HEADER_LEN + name_len + extra_len
    # Some packers write the size in a trailing data descriptor (size 0 here); accept the
    # content when it begins with the media type.
    content = data[start : start + (size or len(EPUB_MIMETYPE))]
    return content.strip() == EPUB_MIMETYPE


def sniff(data: bytes) -> DocumentKind | None:
    """The document kind the bytes really are, or None."""
    if is_pdf(data):
        return "pdf"
    if is_epub(data):
        return "epub"
    return None


def matches(kind: str, data: bytes) -> bool:
    """Whether `data` is a file of the declared `kind` (`pdf` or `epub`)."""
    return sniff(data) == kind


# --- HTTP content types and HTML charsets -----------------------------------------------

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_META_WINDOW = 4096
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16le"),
    (codecs.BOM_UTF16_BE, "utf-16be"),
)
# HTML standard, "prescan": a <meta> can only be read because the bytes are ASCII-compatible,
# so a meta claiming UTF-16 means UTF-8; x-user-defined there means windows-1252.
_META_OVERRIDES = {"utf-16le": "utf-8", "utf-16be": "utf-8", "x-user-defined": "windows-1252"}


def parse_content_type(header: str) -> tuple[str, str | None]:
    """(`type/subtype` in lower case, charset parameter or None) of a Content-Type value."""
    media_type, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("\"'").strip()
    return media_type.strip().lower(), charset


def encoding_for_label(label: str | None) -> webencodings.Encoding | None:
    """The WHATWG Encoding Standard's "get an encoding": the encoding a browser uses for
    `label` (ASCII case-insensitive, surrounding ASCII whitespace ignored), or None when
    browsers do not know the label. The label table is `webencodings`' copy of the standard;
    nothing outside it reaches Python's codec registry (no `punycode`, `idna`, `rot13`...)."""
    if not label:
        return None
    return webencodings.lookup(label)


def _meta_encoding(head: bytes) -> tuple[bool, webencodings.Encoding | None]:
    """(whether a `<meta charset>` was declared, its usable encoding or None)."""
    match = _META_CHARSET.search(head)
    if match is None:
        return False, None
    found = encoding_for_label(match.group(1).decode("ascii"))
    if found is not None and found.name in _META_OVERRIDES:
        found = webencodings.lookup(_META_OVERRIDES[found.name])
    return True, found


def decode_html(body: bytes, header_charset: str | None) -> tuple[str, str]:
    """Decode an HTML body; returns (text, WHATWG name of the encoding used).

    Order (HTML standard, simplified): byte-order mark; the Content-Type charset; a
    `<meta charset>`/`http-equiv` in the first 4 KiB. Only labels of the WHATWG Encoding
    Standard count. When a label was declared but none is known, UTF-8 (as browsers fall
    back); when nothing was declared, UTF-8 if the bytes are valid UTF-8, else windows-1252.
    Undecodable bytes become U+FFFD. The encodings the standard replaces wholesale
    (ISO-2022-KR, HZ...) raise terminal `E_UNSUPPORTED_CONTENT`: a browser shows nothing.
    Linear in the size of `body` for every encoding that can be reached.
    """
    for bom, name in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(name, "replace"), name
    encoding = encoding_for_label(header_charset)
    declared = bool(header_charset)
    if encoding is None:
        in_meta, encoding = _meta_encoding(body[:_META_WINDOW])
        declared = declared or in_meta
    if encoding is None:
        if declared:
            return body.decode("utf-8", "replace"), "utf-8"
        try:
            return body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            encoding = webencodings.lookup("windows-1252")
            assert encoding is not None
    if encoding.name == "replacement":
        raise TerminalError(
            "E_UNSUPPORTED_CONTENT",
            "the page declares an encoding browsers refuse to decode (replacement encoding)",
        )
    text, _consumed = encoding.codec_info.decode(body, "replace")
    return text, encoding.name
