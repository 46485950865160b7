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
# WHATWG Encoding Standard: these labels mean windows-1252; a meta tag claiming UTF-16 on
# bytes we are decoding as ASCII-compatible means UTF-8.
_ALIASES = {
    "iso-8859-1": "windows-1252",
    "latin1": "windows-1252",
    "latin-1": "windows-1252",
    "us-ascii": "windows-1252",
    "ascii": "windows-1252",
    "utf-16": "utf-8",
    "utf-16le": "utf-8",
    "utf-16be": "utf-8",
}
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def parse_content_type(header: str) -> tuple[str, str | None]:
    """(`type/subtype` in lower case, charset parameter or None) of a Content-Type value."""
    media_type, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("\"'").strip()
    return media_type.strip().lower(), charset


def _known_encoding(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().lower()
    label = _ALIASES.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def decode_html(body: bytes, header_charset: str | None) -> tuple[str, str]:
    """Decode an HTML body; returns (text, encoding used).

    Order (HTML standard, simplified): byte-order mark, then the Content-Type charset, then
    a `<meta charset>` / `http-equiv` declaration in the first 4 KiB, then UTF-8 if the
    bytes are valid UTF-8, else windows-1252. Undecodable bytes become U+FFFD.
    """
    for bom, name in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(name, "replace"), name
    encoding = _known_encoding(header_charset)
    if encoding is None:
        match = _META_CHARSET.search(body[:4096])
        encoding = _known_encoding(match.group(1).decode("ascii")) if match else None
    if encoding is None:
        try:
            return body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            encoding = "cp1252"
    return body.decode(encoding, "replace"), encoding
