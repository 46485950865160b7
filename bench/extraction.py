"""Extraction benchmark: quality and speed on the shared article pages, against a baseline.

Prints one JSON object: our figures (pages, mean_f1, p10_f1, title_exact, ms_per_page,
worst pages), the same figures for readability-lxml measured in the same run on the same
pages, and the ratios ours / baseline. Quality uses the shared yardstick
(`../shared/tools/score_extraction.py`); ms_per_page times the extraction call alone
(parsing included, scoring excluded), single process, after one warm-up page.

Run: `python bench/extraction.py [PAGES_DIR]`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(SHARED / "tools"))

import score_extraction as se  # noqa: E402

from tests.support.extraction import text_and_title  # noqa: E402

Extractor = Callable[[str, str], tuple[str, str]]


ours: Extractor = text_and_title


def readability_lxml() -> Extractor | None:
    try:
        from readability import Document
    except ImportError:
        return None

    def extract(html: str, url: str) -> tuple[str, str]:
        doc = Document(html, url=url)
        return se.text_of(doc.summary(html_partial=True)), doc.short_title()

    return extract


def measure(folder: Path, extract: Extractor) -> dict[str, Any]:
    pages = se.pages(folder)
    first = pages[0]
    extract((first / "source.html").read_text(errors="replace"), "http://example.test/warmup/")
    rows: list[tuple[str, float, int]] = []
    spent = 0.0
    for page in pages:
        html = (page / "source.html").read_text(errors="replace")
        started = time.perf_counter()
        text, title = extract(html, f"http://example.test/{page.name}/")
        spent += time.perf_counter() - started
        f1, title_ok = se.score_page(page, text, title)
        rows.append((page.name, f1, title_ok))
    summary: dict[str, Any] = se.summarise(rows, spent)
    return summary


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else SHARED / "data" / "article-pages"
    result: dict[str, Any] = {"extractor": "nexus.extraction.article", **measure(folder, ours)}
    baseline = readability_lxml()
    if baseline is None:
        result["baseline"] = {"extractor": "readability-lxml", "error": "not installed"}
    else:
        base = {"extractor": "readability-lxml", **measure(folder, baseline)}
        result["baseline"] = base
        result["ratios"] = {
            key: _ratio(result[key], base[key])
            for key in ("mean_f1", "p10_f1", "title_exact", "ms_per_page")
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
