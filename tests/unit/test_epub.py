"""EPUB extraction over every shared book (../shared/data/epubs) and synthetic edge cases.

`sanitize` and `canonical_text` are injected; these tests use small local stand-ins so
they pin down what the EPUB layer itself guarantees.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import lxml.html
import pytest

from nexus.errors import TerminalError
from nexus.extraction import filetypes
from nexus.extraction.documents import DocumentResult
from nexus.extraction.epub import extract_epub

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
EPUB_DIR = DATA / "epubs"
ALL_EPUBS = sorted(p.name for p in EPUB_DIR.glob("*.epub"))

TITLES = {
    "childrens-literature.epub": "Children's Literature",
    "epub30-spec.epub": "EPUB 3.0 Specification",
    "georgia-cfi.epub": "Georgia",
    "internallinks.epub": "IDに漢字などを使用したサンプル",
    "moby-dick.epub": "Moby-Dick",
    "regime-anticancer-arabic.epub": "Le Vrai Régime anti-cancer",
    "wasteland.epub": "The Waste Land",
}
IMAGE_ONLY = {"page-blanche.epub"}


def sanitize(html: str, base_url: str) -> str:
    return html


def canonical_text(html: str) -> str:
    if not html.strip():
        return ""
    return " ".join(lxml.html.fragment_fromstring(html, create_parent="div").text_content().split())


def parse(html: str) -> lxml.html.HtmlElement:
    return lxml.html.fragment_fromstring(html, create_parent="div")


def extract(data: bytes) -> DocumentResult:
    return extract_epub(data, sanitize, canonical_text)


def code_of(data: bytes) -> str:
    with pytest.raises(TerminalError) as info:
        extract(data)
    return info.value.code


def test_the_sample_folder_is_there() -> None:
    assert set(ALL_EPUBS) == set(TITLES) | IMAGE_ONLY


@pytest.mark.parametrize("name", ALL_EPUBS)
def test_every_book_yields_text_or_a_precise_code(name: str) -> None:
    data = (EPUB_DIR / name).read_bytes()
    assert filetypes.sniff(data) == "epub"
    if name in IMAGE_ONLY:
        assert code_of(data) == "E_EXTRACTION_EMPTY"
        return
    result = extract(data)
    assert result.title == TITLES[name]
    assert [f.idx for f in result.fragments] == list(range(len(result.fragments)))
    for fragment in result.fragments:
        assert any(ch.isalnum() for ch in fragment.text)
        elements = list(parse(fragment.html).iter())
        assert not {el.tag for el in elements} & {"script", "style", "body", "head", "img"}
        assert not [name for el in elements for name in el.attrib if ":" in name]


def _spine_paths(data: bytes) -> tuple[list[str], list[str]]:
    """Linear and non-linear spine documents, read independently with regexes."""
    z = zipfile.ZipFile(io.BytesIO(data))
    opf_path = re.search(r'full-path="([^"]+)"', z.read("META-INF/container.xml").decode())
    assert opf_path
    opf = z.read(opf_path.group(1)).decode()
    hrefs = {
        m.group(2): m.group(1)
        for m in re.finditer(r'<item\b[^>]*?href="([^"]+)"[^>]*?id="([^"]+)"', opf)
    } | {
        m.group(1): m.group(2)
        for m in re.finditer(r'<item\b[^>]*?id="([^"]+)"[^>]*?href="([^"]+)"', opf)
    }
    linear: list[str] = []
    other: list[str] = []
    for ref in re.finditer(r"<itemref\b[^>]*>", opf):
        idref = re.search(r'idref="([^"]+)"', ref.group(0))
        assert idref
        target = other if 'linear="no"' in ref.group(0) else linear
        target.append(hrefs[idref.group(1)])
    return linear, other


def test_moby_dick_follows_the_spine() -> None:
    data = (EPUB_DIR / "moby-dick.epub").read_bytes()
    result = extract(data)
    linear, other = _spine_paths(data)
    assert len(linear) == 142 and other == ["cover.xhtml", "toc.xhtml"]
    # Linear documents first (one of them, the image title page, has no text), then the
    # non-linear table of contents; the non-linear cover is an image only.
    assert len(result.fragments) == len(linear) - 1 + 1
    assert result.fragments[-1].text.startswith("Contents")
    assert "Call me Ishmael" not in result.fragments[-1].text
    texts = [f.text for f in result.fragments]
    markers = ("Call me Ishmael", "Second Day", "Third Day", "Epilogue")
    first = [next(i for i, t in enumerate(texts) if marker in t) for marker in markers]
    assert first == sorted(first) == [4, 137, 138, 139]


def test_internal_links_become_anchors() -> None:
    result = extract((EPUB_DIR / "internallinks.epub").read_bytes())
    hrefs = [a.get("href") for f in result.fragments for a in parse(f.html).iter("a")]
    assert any(h and h.startswith("#") for h in hrefs)
    assert all(h is None or h.startswith(("#", "http://", "https://", "mailto:")) for h in hrefs)


def test_arabic_book() -> None:
    result = extract((EPUB_DIR / "regime-anticancer-arabic.epub").read_bytes())
    assert "السرطان" in result.fragments[0].text


# --- synthetic books --------------------------------------------------------------------

CONTAINER = """<?xml version="1.0"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
<rootfiles><rootfile full-path="OPS/book.opf" media-type="application/oebps-package+xml"/>
</rootfiles></container>"""

XHTML = """<?xml version="1.0" encoding="UTF-8"?>
<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">
<head><title>t</title><style>p {{}}</style></head><body>{body}</body></html>"""


def make_epub(
    docs: dict[str, str],
    spine: list[tuple[str, bool]],
    *,
    metadata: str = "<dc:title>Book</dc:title>",
    extra: dict[str, str] | None = None,
    mimetype_first: bool = True,
) -> bytes:
    manifest = "".join(
        f'<item id="{name}" href="{name}.xhtml" media-type="application/xhtml+xml"/>'
        for name in docs
    )
    no = ' linear="no"'
    itemrefs = "".join(f'<itemref idref="{name}"{"" if linear else no}/>' for name, linear in spine)
    opf = (
        '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
        f'<metadata xmlns:dc="http://purl.org/dc/elements/1.1/">{metadata}</metadata>'
        f"<manifest>{manifest}</manifest><spine>{itemrefs}</spine></package>"
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        if mimetype_first:
            z.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        z.writestr("META-INF/container.xml", CONTAINER)
        z.writestr("OPS/book.opf", opf)
        for name, body in docs.items():
            z.writestr(
                f"OPS/{name}.xhtml", body if body.startswith("<") else XHTML.format(body=body)
            )
        for path, content in (extra or {}).items():
            z.writestr(path, content)
    return out.getvalue()


def test_non_linear_documents_come_last() -> None:
    data = make_epub(
        {"notes": "<p>Notes</p>", "one": "<p>One</p>", "two": "<p>Two</p>"},
        [("notes", False), ("one", True), ("two", True)],
    )
    assert [f.text for f in extract(data).fragments] == ["One", "Two", "Notes"]


def test_documents_without_text_are_skipped() -> None:
    data = make_epub(
        {"cover": '<img src="cover.jpg" alt="cover"/>', "one": "<p>One</p>", "blank": "<p> </p>"},
        [("cover", True), ("one", True), ("blank", True)],
    )
    result = extract(data)
    assert [(f.idx, f.text) for f in result.fragments] == [(0, "One")]


def test_main_title_refinement_wins() -> None:
    meta = (
        '<dc:title id="sub">A Subtitle</dc:title><dc:title id="t">The Main</dc:title>'
        '<meta refines="#t" property="title-type">main</meta>'
    )
    data = make_epub({"one": "<p>x</p>"}, [("one", True)], metadata=meta)
    assert extract(data).title == "The Main"


def test_missing_title_is_none() -> None:
    data = make_epub({"one": "<p>x</p>"}, [("one", True)], metadata="")
    assert extract(data).title is None


def test_body_is_reduced_to_plain_html() -> None:
    body = (
        '<section epub:type="chapter" xml:lang="fr"><h1>T</h1>'
        '<script>alert(1)</script><p>Voir <a href="two.xhtml#n1">note</a>, '
        '<a href="two.xhtml">chapitre</a>, <a href="https://example.com/">site</a>.</p>'
        '<img src="../images/a.png"/><!-- comment --></section>'
    )
    data = make_epub({"one": body}, [("one", True)])
    html = extract(data).fragments[0].html
    assert "epub:type" not in html and "script" not in html and "alert" not in html
    assert 'lang="fr"' in html
    assert 'href="#n1"' in html and 'href="https://example.com/"' in html
    assert "<a>chapitre</a>" in html
    assert "<img" not in html and "comment" not in html
    assert extract(data).fragments[0].text.endswith("Voir note, chapitre, site.")


def test_html_entities_in_xhtml_are_tolerated() -> None:
    doc = "<html><head><meta charset='utf-8'/></head><body><p>caf&eacute;&nbsp;ok</p></body></html>"
    data = make_epub({"one": doc}, [("one", True)])
    assert extract(data).fragments[0].text == "café ok"


def test_external_entities_are_not_resolved() -> None:
    doc = (
        '<?xml version="1.0"?><!DOCTYPE html [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        '<html xmlns="http://www.w3.org/1999/xhtml"><body><p>a &xxe; b</p></body></html>'
    )
    data = make_epub({"one": doc}, [("one", True)])
    result = extract(data)
    assert "root:" not in result.fragments[0].text


def test_image_only_book_is_empty() -> None:
    data = make_epub({"p1": '<img src="p1.jpg"/>'}, [("p1", True)])
    assert code_of(data) == "E_EXTRACTION_EMPTY"


def _encrypted_with(algorithm: str) -> bytes:
    """A one-chapter book whose META-INF/encryption.xml names `algorithm`."""
    enc = (
        '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
        'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData>'
        f'<enc:EncryptionMethod Algorithm="{algorithm}"/>'
        "</enc:EncryptedData></encryption>"
    )
    return make_epub({"one": "<p>x</p>"}, [("one", True)], extra={"META-INF/encryption.xml": enc})


def test_drm_encrypted_book_fails() -> None:
    data = _encrypted_with("http://www.w3.org/2001/04/xmlenc#aes128-cbc")
    assert code_of(data) == "E_EXTRACTION_FAILED"


def test_font_obfuscation_is_not_drm() -> None:
    data = _encrypted_with("http://www.idpf.org/2008/embedding")
    assert extract(data).fragments[0].text == "x"


@pytest.mark.parametrize("data", [b"", b"%PDF-1.4 nope", b"just text"])
def test_not_a_zip_is_invalid_file_type(data: bytes) -> None:
    assert code_of(data) == "E_INVALID_FILE_TYPE"


def test_broken_books_fail() -> None:
    good = make_epub({"one": "<p>x</p>"}, [("one", True)])
    assert code_of(good[: len(good) // 2]) == "E_EXTRACTION_FAILED"  # truncated archive
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("mimetype", "application/epub+zip")
    assert code_of(out.getvalue()) == "E_EXTRACTION_FAILED"  # no container.xml
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("META-INF/container.xml", CONTAINER)
        z.writestr("OPS/book.opf", "<package><not-closed>")
    assert code_of(out.getvalue()) == "E_EXTRACTION_FAILED"  # malformed OPF
    assert code_of(make_epub({}, [])) == "E_EXTRACTION_FAILED"  # empty spine


def test_zip_bomb_member_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from nexus.extraction import epub

    monkeypatch.setattr(epub, "MAX_MEMBER_BYTES", 1000)
    data = make_epub({"one": "<p>" + "x" * 5000 + "</p>"}, [("one", True)])
    assert code_of(data) == "E_EXTRACTION_FAILED"


# --- magic bytes ------------------------------------------------------------------------


def test_filetypes() -> None:
    good = make_epub({"one": "<p>x</p>"}, [("one", True)])
    assert filetypes.sniff(good) == "epub" and filetypes.matches("epub", good)
    no_mimetype = make_epub({"one": "<p>x</p>"}, [("one", True)], mimetype_first=False)
    assert filetypes.is_zip(no_mimetype) and not filetypes.is_epub(no_mimetype)
    assert filetypes.sniff(b"%PDF-1.7\n...") == "pdf"
    assert filetypes.sniff(b"\xef\xbb\xbf%PDF-1.4") == "pdf"  # junk before the header
    assert filetypes.sniff(b"PK\x03\x04" + b"\0" * 40) is None
    assert filetypes.sniff(b"<html>") is None
    assert not filetypes.matches("pdf", good)
