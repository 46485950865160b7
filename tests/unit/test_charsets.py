"""Page decoding: only WHATWG Encoding Standard labels, in linear time, never an exception.

Regression for issue 11 point 1: `charset=punycode` decoded quadratically on the agents'
event loop, and labels such as `idna`, `rot13`, `hex` or `undefined` raised (E_INTERNAL,
retried). Browsers know a fixed label table; anything else is not an encoding to them.
"""

from __future__ import annotations

import time

import pytest

from nexus.errors import TerminalError
from nexus.extraction.filetypes import decode_html, encoding_for_label
from nexus.extraction.pool import web_page

# Labels Python's codec registry knows that are not encodings of the web: text transforms,
# byte transforms, an IDNA label codec, and junk.
NOT_WEB_LABELS = [
    "punycode", "idna", "rot13", "rot_13", "hex", "hex_codec", "base64", "zlib", "bz2",
    "uu", "quopri", "undefined", "unicode_escape", "raw_unicode_escape", "utf-7",
    "utf-32", "mbcs", "palmos", "cp037", "nonsense",
]  # fmt: skip


@pytest.mark.parametrize(
    ("label", "name"),
    [
        # A sample across the standard's table, with its case and whitespace rules.
        ("utf-8", "utf-8"),
        ("UTF8", "utf-8"),
        (" unicode-1-1-utf-8\t", "utf-8"),
        ("latin1", "windows-1252"),
        ("ISO-8859-1", "windows-1252"),
        ("us-ascii", "windows-1252"),
        ("ascii", "windows-1252"),
        ("iso-8859-2", "iso-8859-2"),
        ("cp1251", "windows-1251"),
        ("koi8-r", "koi8-r"),
        ("koi8-u", "koi8-u"),
        ("sjis", "shift_jis"),
        ("x-sjis", "shift_jis"),
        ("euc-jp", "euc-jp"),
        ("csiso2022jp", "iso-2022-jp"),
        ("ks_c_5601-1987", "euc-kr"),
        ("gb2312", "gbk"),
        ("gb18030", "gb18030"),
        ("big5-hkscs", "big5"),
        ("tis-620", "windows-874"),
        ("iso-8859-8-i", "iso-8859-8-i"),
        ("x-mac-cyrillic", "x-mac-cyrillic"),
        ("utf-16", "utf-16le"),
        ("unicodefffe", "utf-16be"),
        ("iso-2022-kr", "replacement"),
        ("hz-gb-2312", "replacement"),
        ("x-user-defined", "x-user-defined"),
    ],
)
def test_labels_map_to_their_standard_encoding(label: str, name: str) -> None:
    found = encoding_for_label(label)
    assert found is not None and found.name == name


@pytest.mark.parametrize("label", [*NOT_WEB_LABELS, "", "  "])
def test_labels_outside_the_standard_are_unknown(label: str) -> None:
    assert encoding_for_label(label) is None


@pytest.mark.parametrize("label", NOT_WEB_LABELS)
def test_an_unknown_declared_label_decodes_as_utf8_with_replacement(label: str) -> None:
    body = "<p>naïve café</p>".encode() + b"\xff"
    text, used = decode_html(body, label)
    assert used == "utf-8"
    assert text == "<p>naïve café</p>\ufffd"


def test_an_unknown_header_label_lets_the_meta_declaration_speak() -> None:
    body = '<meta charset="windows-1251"><p>Привет</p>'.encode("cp1251")
    assert decode_html(body, "rot13") == (
        '<meta charset="windows-1251"><p>Привет</p>',
        "windows-1251",
    )


def test_an_unknown_meta_label_means_utf8() -> None:
    body = b'<meta charset="hex"><p>caf\xc3\xa9 \xe9</p>'
    assert decode_html(body, None) == ('<meta charset="hex"><p>café \ufffd</p>', "utf-8")


def test_punycode_is_linear_now() -> None:
    """2 MiB of a punycode-declared page: UTF-8, at memcpy speed (quadratic before: hours)."""
    body = b"<p>" + b"abcdefgh-" * (2 * 1024 * 1024 // 9) + b"</p>"
    started = time.process_time()
    text, used = decode_html(body, "punycode")
    assert used == "utf-8" and len(text) == len(body)
    # A generous bound (CPU time, not wall time): the old path needed minutes.
    assert time.process_time() - started < 5


def test_header_then_meta_then_sniffing() -> None:
    latin = "<p>Café über</p>".encode("latin-1")
    assert decode_html(latin, "ISO-8859-1") == ("<p>Café über</p>", "windows-1252")
    assert decode_html(latin, None) == ("<p>Café über</p>", "windows-1252")
    assert decode_html("<p>naïve</p>".encode(), None) == ("<p>naïve</p>", "utf-8")
    meta = b'<meta http-equiv="Content-Type" content="text/html; charset=koi8-r"><p>\xf0\xd2</p>'
    assert decode_html(meta, None)[0].endswith("<p>Пр</p>")


def test_byte_order_mark_wins_over_any_label() -> None:
    body = "\ufeff<p>ü</p>".encode("utf-16-le")
    assert decode_html(body, "punycode") == ("<p>ü</p>", "utf-16le")
    assert decode_html(b"\xef\xbb\xbf<p>\xc3\xbc</p>", "koi8-r") == ("<p>ü</p>", "utf-8")


def test_meta_claiming_utf16_means_utf8_and_user_defined_means_windows_1252() -> None:
    assert decode_html(b'<meta charset="utf-16"><p>\xc3\xbc</p>', None)[1] == "utf-8"
    assert decode_html(b'<meta charset="x-user-defined"><p>\xfc</p>', None) == (
        '<meta charset="x-user-defined"><p>ü</p>',
        "windows-1252",
    )


def test_the_replacement_encoding_is_a_terminal_unsupported_page() -> None:
    with pytest.raises(TerminalError) as info:
        decode_html(b"<p>\x1b$)C\x0e!!</p>", "iso-2022-kr")
    assert info.value.code == "E_UNSUPPORTED_CONTENT"


def test_web_page_decodes_inside_the_extraction_call() -> None:
    body = (
        "<html><head><title>Ein Titel für die Seite</title></head><body><article>"
        + "<p>Grüße aus Köln, wo es heute regnet, und zwar ziemlich stark.</p>" * 12
        + "</article></body></html>"
    ).encode("cp1252")
    title, rows = web_page(body, "latin1", "https://example.test/a")
    assert title == "Ein Titel für die Seite"
    assert "Grüße aus Köln" in rows[0][2]
