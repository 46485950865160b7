"""The words and tag sets that steer the content scorer: the project's own vocabulary.

Pages name their parts in `class` and `id` attributes. We read those names as words —
split at punctuation, spaces and camelCase humps, lower-cased (`articleBody` → `article
body`, `post__share-bar` → `post share bar`) — and look each word up in a `Vocabulary`:
a word counts when it *is* one of the vocabulary's words, or when it *begins with* one of
its stems (`socialshare`, `sharebar`, `commentlist`; stems are long and specific enough
that no common content word starts with them). Matching words, not substrings, keeps
`loader`, `shadow`, `thread` or `download` from passing for an ad, and `brand` or
`headline` from passing for content.

The vocabulary is grouped by what a reader view leaves out of an article — navigation,
comments, share and follow widgets, advertising, promotion of other pages, page furniture
(headers, footers, sidebars), overlays (cookie banners, sign-up walls) — and what marks
the article itself. The tag sets come from the HTML standard's content categories.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

_HUMPS = re.compile(r"([a-z0-9])([A-Z])")
_NON_WORD = re.compile(r"[^A-Za-z0-9]+")


@functools.lru_cache(maxsize=8192)
def words(value: str) -> str:
    """`value` as space-separated lower-case words (camelCase split)."""
    return " ".join(_NON_WORD.sub(" ", _HUMPS.sub(r"\1 \2", value)).lower().split())


class Vocabulary:
    """Words and stems; `search(value)` tells whether any word of `value` (a class/id
    string, split by `words`) is one of the words, begins with one of the stems, or — for
    stems written `*stem` — contains it (compound names: `fbcommentsmodule`, `megamenu`)."""

    def __init__(self, exact: Iterable[str] = (), stems: Iterable[str] = ()) -> None:
        stems = list(stems)
        inside = [s[1:] for s in stems if s.startswith("*")]
        starts = [s for s in stems if not s.startswith("*")]
        alternatives = []
        if exact:
            alternatives.append(rf"(?:{_alternation(exact)})(?= |$)")
        if starts:
            alternatives.append(rf"(?:{_alternation(starts)})[a-z0-9]*(?= |$)")
        if inside:
            alternatives.append(rf"[a-z0-9]*(?:{_alternation(inside)})[a-z0-9]*(?= |$)")
        self._pattern = re.compile(rf"(?:^| )(?:{'|'.join(alternatives)})")

    def search(self, value: str) -> bool:
        if not value:
            return False
        return self._search(value)

    @functools.lru_cache(maxsize=8192)  # noqa: B019 (a few module-level instances)
    def _search(self, value: str) -> bool:
        found = " ".join(w for w in words(value).split() if w not in _NEVER)
        return self._pattern.search(found) is not None


def _alternation(items: Iterable[str]) -> str:
    return "|".join(sorted(map(re.escape, items), key=len, reverse=True))


# Words that contain a stem but mean something else.
_NEVER = frozenset({"commentary", "commentaries", "commentator", "history", "histories"})


# --- what is not the article ------------------------------------------------------------

_NAVIGATION = (
    ["nav", "menu", "menus", "crumbs", "pager", "paging", "skip", "jump"],
    ["navbar", "navigation", "*breadcrumb", "pagination", "sitemap", "*menu", "topbar"],
)
_COMMENTS = (
    ["replies", "reply", "respond", "talkback", "reactions", "discuss"],
    ["*comment", "*disqus", "discussion", "guestbook", "shoutbox", "forum"],
)
# Share and follow widgets weigh against but never remove: share plugins tag the element
# that holds the buttons, which is often the article's own container.
_SHARING = (
    ["like", "likes", "follow", "tweet", "print", "email"],
    ["share", "sharing", "*social", "sociable", "addthis", "addtoany", "bookmark"],
)
_ADVERTISING = (
    ["ad", "ads", "adv", "dfp", "gpt", "mpu"],
    ["*advert", "adsense", "adslot", "adunit", "adwrap", "doubleclick", "*sponsor", "banner",
     "skyscraper", "leaderboard", "billboard", "commercial", "affiliate", "*outbrain",
     "*taboola", "promo"],
)  # fmt: skip
_OTHER_PAGES = (
    ["popular", "trending", "archive", "archives", "tags", "tag", "categories", "rss",
     "feed", "feeds", "login"],
    ["*related", "recommend", "recirc", "readnext", "*newsletter", "subscri", "signup",
     "register", "paywall", "campaign", "shopping"],
)  # fmt: skip
# Page furniture: the page's own header, footer and side columns...
_FURNITURE = (
    ["header", "footer", "colophon", "copyright", "legal", "sidebar", "supplemental",
     "extra", "extras", "toolbar", "utility"],
    ["*sidebar", "*footer"],
)  # fmt: skip
# ...and names that often, not always, mean furniture: they weigh against, never remove
# (broken markup can leave the article inside a masthead; "meta" and "media" blocks sit
# inside articles too).
_FURNITURE_MAYBE = (
    ["masthead", "aside", "rail", "widget", "widgets", "secondary", "tools", "meta", "media",
     "contact", "hidden"],
    ["widget", "masthead"],
)  # fmt: skip
_OVERLAYS = (
    ["modal", "overlay", "popup", "popover", "dialog", "lightbox", "interstitial"],
    ["cookie", "consent", "gdpr", "agegate", "notification", "*popup"],
)


# Media players: their text is controls, settings and captions menus.
_PLAYERS = (["controls", "captions", "subtitles"], ["player", "videoplayer", "audioplayer"])
# Rotating strips of teasers or pictures.
_CAROUSELS = (
    ["gallery", "galleries"],
    ["carousel", "slider", "slideshow", "scroller", "ticker", "marquee"],
)


def _merge(*groups: tuple[list[str], list[str]]) -> tuple[list[str], list[str]]:
    return [w for g in groups for w in g[0]], [s for g in groups for s in g[1]]


# Removed before scoring: regions that are almost never the article...
UNLIKELY = Vocabulary(
    *_merge(
        _NAVIGATION,
        _COMMENTS,
        _ADVERTISING,
        _OVERLAYS,
        _OTHER_PAGES,
        _FURNITURE,
        _PLAYERS,
        _CAROUSELS,
    )
)
# ...unless the same names also say article (`article-footer` is kept for scoring).
MAYBE_CANDIDATE = Vocabulary(
    ["article", "articles", "content", "contents", "main", "body", "story", "column",
     "columns", "mathjax"],
    ["*article", "*content", "story", "mathjax"],
)  # fmt: skip
# Words that mark the article (+25 class weight).
_ARTICLE = (
    ["article", "articles", "content", "contents", "main", "body", "story", "stories",
     "entry", "post", "posts", "text", "prose", "blog", "copy", "hentry", "column",
     "columns", "reader", "markdown", "richtext", "page", "math", "mathjax"],
    ["*article", "*content", "story", "entry", "mathjax"],
)  # fmt: skip
POSITIVE = Vocabulary(*_ARTICLE)
# Words that weigh against (-25).
NEGATIVE = Vocabulary(
    *_merge(_COMMENTS, _SHARING, _ADVERTISING, _OVERLAYS, _FURNITURE, _FURNITURE_MAYBE,
            _OTHER_PAGES, _CAROUSELS)
)  # fmt: skip
# Where the author's name sits.
BYLINE = Vocabulary(
    ["by", "byline", "author", "authors", "dateline", "writer", "writtenby", "contributor"],
    ["byline", "author", "writtenby", "contributor"],
)
# Share bars inside the article.
SHARE = Vocabulary(*_SHARING)

# Embeds from hosts that serve video players, kept in place of other embeds.
VIDEO_HOSTS = re.compile(
    r"//(?:[a-z0-9-]+\.)*(?:youtube\.com|youtube-nocookie\.com|youtu\.be|vimeo\.com|"
    r"dailymotion\.com|twitch\.tv|ted\.com|wikimedia\.org|archive\.org|v\.qq\.com)\b",
    re.I,
)
# The whole text of a placeholder: an ad slot's label or a "loading" spinner's.
AD_WORDS = re.compile(
    r"^\s*(?:ad|ads|advert|advertisement|advertising|sponsored|anzeige|werbung|"
    r"publicit[eé]|publicidad|pubblicit[aà]|reklama|реклама|广告|廣告|広告|광고)\s*:?\s*$",
    re.I,
)
LOADING_WORDS = re.compile(
    r"^\s*(?:loading|chargement|cargando|carregando|caricamento|laden|wird geladen|"
    r"загрузка|加载中|載入中|読み込み中|로딩 중)\s*(?:…|\.{2,3})?\s*$",
    re.I,
)

# --- text measures ----------------------------------------------------------------------

# Comma-like separators of clauses across scripts (Latin, Arabic, CJK, small/fullwidth).
COMMAS = re.compile("[,\u060c\u3001\ufe10\ufe11\ufe50\ufe51\uff0c\uff64\u2e41]")
SENTENCE_END = re.compile("[.!?\u3002\uff01\uff1f](?:\\s|$)")
SPACES = re.compile(r"\s{2,}")

# --- tag sets (HTML standard content categories) ----------------------------------------

UNLIKELY_ROLES = frozenset(
    {"navigation", "menu", "menubar", "complementary", "dialog", "alertdialog", "alert"}
)
HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
# Nodes whose own text is scored and passed up to their ancestors.
TAGS_TO_SCORE = frozenset({"p", "pre", "td", "section", *HEADINGS[1:]})
# A div holding one of these is a container; without any it is a paragraph in disguise.
DIV_TO_P_ELEMS = frozenset({"p", "div", "pre", "blockquote", "ol", "ul", "dl", "table", "img"})
# Siblings merged into the article keep these tags; others become divs.
ALTER_TO_DIV_EXCEPTIONS = frozenset({"div", "article", "section", "p", "ol", "ul"})
# Phrasing content (HTML standard): the inline elements a paragraph may hold. `a`, `del`
# and `ins` count when their children do (`dom.is_phrasing`).
PHRASING = frozenset(
    {
        "abbr", "audio", "b", "bdo", "br", "button", "cite", "code", "data", "datalist",
        "dfn", "em", "embed", "i", "img", "input", "kbd", "label", "mark", "math", "meter",
        "noscript", "object", "output", "progress", "q", "ruby", "samp", "script", "select",
        "small", "span", "strong", "sub", "sup", "textarea", "time", "var", "wbr",
    }
)  # fmt: skip
TEXTISH = frozenset({"span", "li", "td"}) | DIV_TO_P_ELEMS

# schema.org types of a written piece: `Article` and its subtypes (all end in "Article"),
# postings (blog, live blog, forum, social media), reports and API references.
_JSONLD_ARTICLE = re.compile(r"^(?:\w*Article|\w*Posting|Report|APIReference)$")


def is_article_type(value: object) -> bool:
    """Whether a JSON-LD `@type` (a name, or a list of names) is a written piece."""
    names = value if isinstance(value, list) else [value]
    return any(
        isinstance(n, str) and _JSONLD_ARTICLE.match(n.rsplit("/", 1)[-1].split(":")[-1])
        for n in names
    )
