"""The extraction quality bar, over every page of the shared article corpus.

Measured with the shared yardstick (`../shared/tools/score_extraction.py`): mean token-F1
of `Article.text` against the text of each page's expected.html, and the share of exact
(whitespace- and case-normalised) title matches with expected-metadata.json.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.extraction import text_and_title

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
PAGES = SHARED / "data" / "article-pages"
MIN_MEAN_F1 = 0.97
MIN_TITLE_EXACT = 0.85


def _scorer() -> ModuleType:
    tools = str(SHARED / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    import score_extraction

    return score_extraction


@pytest.fixture(scope="module")
def report() -> dict[str, object]:
    assert PAGES.is_dir(), f"shared article pages missing at {PAGES}"
    result: dict[str, object] = _scorer().score_folder(PAGES, text_and_title)
    return result


def test_covers_the_whole_folder(report: dict[str, object]) -> None:
    expected = len(_scorer().pages(PAGES))
    assert expected >= 80
    assert report["pages"] == expected


def test_mean_token_f1(report: dict[str, object]) -> None:
    assert isinstance(report["mean_f1"], float)
    assert report["mean_f1"] >= MIN_MEAN_F1, report


def test_title_exact_match_rate(report: dict[str, object]) -> None:
    assert isinstance(report["title_exact"], float)
    assert report["title_exact"] >= MIN_TITLE_EXACT, report
