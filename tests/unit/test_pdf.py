"""PDF extraction over every shared sample (../shared/data/pdfs) and synthetic edge cases."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from nexus.errors import TerminalError
from nexus.extraction import filetypes
from nexus.extraction.pdf import extract_pdf, split_paragraphs

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PDF_DIR = DATA / "pdfs"
META = {m["path"]: m for m in json.loads((PDF_DIR / "files.json").read_text())["data"]}
ALL_PDFS = sorted(p.relative_to(PDF_DIR).as_posix() for p in PDF_DIR.rglob("*.pdf"))

# Scanned/image-only samples: no text layer at all.
IMAGE_ONLY = {
    "007-imagemagick-images/imagemagick-ASCII85Decode.pdf",
    "007-imagemagick-images/imagemagick-CCITTFaxDecode.pdf",
    "007-imagemagick-images/imagemagick-lzw.pdf",
    "019-grayscale-image/grayscale-image.pdf",
    "023-cmyk-image/cmyk-image.pdf",
}
# Every page carries text: the fragment count must equal the page count of files.json.
TEXT_ON_EVERY_PAGE = {
    "001-trivial/minimal-document.pdf",
    "004-pdflatex-4-pages/pdflatex-4-pages.pdf",
    "006-pdflatex-outline/pdflatex-outline.pdf",
    "009-pdflatex-geotopo/GeoTopo-komprimiert.pdf",
    "014-outlines/mistitled_outlines_example.pdf",
    "015-arabic/habibi-rotated.pdf",
    "026-latex-multicolumn/multicolumn.pdf",
}
TITLES = {
    "009-pdflatex-geotopo/GeoTopo-komprimiert.pdf": "Geometrie und Topologie",
    "011-google-doc-document/google-doc-document.pdf": "PDF Example Document",
    "020-xmp/output_with_metadata_pymupdf.pdf": "Sample PDF with XMP Metadata",  # XMP only
    "007-imagemagick-images/imagemagick-images.pdf": "imagemagick-images",  # NUL stripped
    "008-reportlab-inline-image/inline-image.pdf": None,  # "untitled" placeholder
    "001-trivial/minimal-document.pdf": None,
}


def test_the_sample_folder_is_there() -> None:
    assert len(ALL_PDFS) >= 25


@pytest.mark.parametrize("path", ALL_PDFS)
def test_every_sample_yields_text_or_a_precise_code(path: str) -> None:
    data = (PDF_DIR / path).read_bytes()
    meta = META.get(path, {})
    assert filetypes.sniff(data) == "pdf"
    if meta.get("encrypted"):
        with pytest.raises(TerminalError) as info:
            extract_pdf(data)
        assert info.value.code == "E_PDF_ENCRYPTED"
        return
    if path in IMAGE_ONLY:
        with pytest.raises(TerminalError) as info:
            extract_pdf(data)
        assert info.value.code == "E_EXTRACTION_EMPTY"
        return
    result = extract_pdf(data)
    indexes = [f.idx for f in result.fragments]
    assert indexes == sorted(set(indexes))
    assert indexes[-1] < meta.get("pages", 10_000)
    for fragment in result.fragments:
        assert fragment.text.strip() and any(ch.isalnum() for ch in fragment.text)
        assert fragment.html.startswith("<p>") and "<script" not in fragment.html
    if path in TEXT_ON_EVERY_PAGE:
        assert indexes == list(range(meta["pages"]))
    if path in TITLES:
        assert result.title == TITLES[path]


def test_page_text_and_order() -> None:
    result = extract_pdf((PDF_DIR / "004-pdflatex-4-pages/pdflatex-4-pages.pdf").read_bytes())
    assert result.fragments[0].text.startswith("Hello, here is some text without a meaning.")
    assert [f.idx for f in result.fragments] == [0, 1, 2, 3]


def test_ligatures_are_expanded() -> None:
    result = extract_pdf((PDF_DIR / "021-pdfa/crazyones-pdfa.pdf").read_bytes())
    text = result.fragments[0].text
    assert "misfits" in text and "differently" in text and "ﬁ" not in text


def test_arabic_text() -> None:
    result = extract_pdf((PDF_DIR / "015-arabic/habibi.pdf").read_bytes())
    assert "حَبيبي" in result.fragments[0].text
    assert result.title == "habibi"


def test_damaged_page_tree_is_recovered() -> None:
    result = extract_pdf((PDF_DIR / "017-unreadable-meta-data/unreadablemetadata.pdf").read_bytes())
    assert "Industrial" in result.fragments[0].text


def test_html_is_escaped_paragraphs() -> None:
    assert split_paragraphs("a <b> & c") == ["a <b> & c"]
    result = extract_pdf(_with_text_pdf())
    assert "<p>" in result.fragments[0].html


def test_custom_canonical_text_is_used() -> None:
    data = (PDF_DIR / "001-trivial/minimal-document.pdf").read_bytes()
    result = extract_pdf(data, canonical_text=lambda html: "X" + html)
    assert result.fragments[0].text.startswith("X<p>")


# --- synthetic cases --------------------------------------------------------------------


def _with_text_pdf() -> bytes:
    return (PDF_DIR / "001-trivial/minimal-document.pdf").read_bytes()


def _encrypted(user_password: str, owner_password: str, algorithm: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(_with_text_pdf())))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm=algorithm)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-128", "AES-256"])
def test_user_password_is_encrypted(algorithm: str) -> None:
    with pytest.raises(TerminalError) as info:
        extract_pdf(_encrypted("secret", "owner", algorithm))
    assert info.value.code == "E_PDF_ENCRYPTED"


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-256"])
def test_owner_password_only_opens(algorithm: str) -> None:
    result = extract_pdf(_encrypted("", "owner", algorithm))
    assert "Lorem ipsum" in result.fragments[0].text


def test_blank_pages_are_empty() -> None:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.add_blank_page(width=200, height=200)
    out = io.BytesIO()
    writer.write(out)
    with pytest.raises(TerminalError) as info:
        extract_pdf(out.getvalue())
    assert info.value.code == "E_EXTRACTION_EMPTY"


@pytest.mark.parametrize("data", [b"%PDF-1.7\nthis is not a pdf", b"%PDF-", _with_text_pdf()[:300]])
def test_corrupt_pdf_fails(data: bytes) -> None:
    with pytest.raises(TerminalError) as info:
        extract_pdf(data)
    assert info.value.code == "E_EXTRACTION_FAILED"


@pytest.mark.parametrize("data", [b"", b"PK\x03\x04zip", b"<html>hello</html>"])
def test_not_a_pdf(data: bytes) -> None:
    with pytest.raises(TerminalError) as info:
        extract_pdf(data)
    assert info.value.code == "E_INVALID_FILE_TYPE"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("one line", ["one line"]),
        ("first para.\n\nsecond para.", ["first para.", "second para."]),
        (
            "a long line that wraps around\nand continues here",
            ["a long line that wraps around and continues here"],
        ),
        ("hyphen-\nated word and more text", ["hyphenated word and more text"]),
        ("Well-\nKnown", ["Well- Known"]),
        ("a\x00b\u00adc  d", ["abc d"]),
        ("\ufffd\ufffd\ufffd x", []),
        ("   \n\n  ", []),
    ],
)
def test_split_paragraphs(raw: str, expected: list[str]) -> None:
    assert split_paragraphs(raw) == expected
