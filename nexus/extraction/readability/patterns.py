"""Tag sets and class/id patterns that steer the content scorer.

The vocabulary follows the heuristics that reader views have converged on (arc90's
Readability and its Mozilla successor): words in class names and ids that usually mark
boilerplate, words that usually mark the article, and the tags that count as blocks.
"""

from __future__ import annotations

import re

# class/id fragments that make a node an unlikely home for the article text.
UNLIKELY = re.compile(
    r"-ad-|ai2html|banner|breadcrumbs|combx|comment|community|cover-wrap|disqus|extra|footer|"
    r"gdpr|header|legends|menu|related|remark|replies|rss|shoutbox|sidebar|skyscraper|social|"
    r"sponsor|supplemental|ad-break|agegate|pagination|pager|popup|yom-remote",
    re.I,
)
# ...unless one of these also appears.
MAYBE_CANDIDATE = re.compile(r"and|article|body|column|content|main|mathjax|shadow", re.I)

POSITIVE = re.compile(
    r"article|body|content|entry|hentry|h-entry|main|page|pagination|post|text|blog|story", re.I
)
NEGATIVE = re.compile(
    r"-ad-|hidden|^hid$| hid$| hid |^hid |banner|combx|comment|com-|contact|footer|gdpr|"
    r"masthead|media|meta|outbrain|promo|related|scroll|share|shoutbox|sidebar|skyscraper|"
    r"sponsor|shopping|tags|widget",
    re.I,
)
BYLINE = re.compile(r"byline|author|dateline|writtenby|p-author", re.I)
SHARE = re.compile(r"(\b|_)(share|sharedaddy)(\b|_)", re.I)
VIDEO_HOSTS = re.compile(
    r"//(www\.)?((dailymotion|youtube|youtube-nocookie|player\.vimeo|v\.qq)\.com|"
    r"(archive|upload\.wikimedia)\.org|player\.twitch\.tv)",
    re.I,
)
AD_WORDS = re.compile(
    r"^(ad(vertising|vertisement)?|pub(licité)?|werb(ung)?|广告|Реклама|Anuncio)$", re.I
)
LOADING_WORDS = re.compile(r"^((loading|正在加载|Загрузка|chargement|cargando)(…|\.\.\.)?)$", re.I)
COMMAS = re.compile("[\u002c\u060c\ufe50\ufe10\ufe11\u2e41\u2e34\u2e32\uff0c]")
SENTENCE_END = re.compile(r"\.( |$)")
SPACES = re.compile(r"\s{2,}")
WS = re.compile(r"\s+")
IMAGE_EXT = re.compile(r"\.(jpg|jpeg|png|webp|gif|avif)", re.I)
SRCSET_URL = re.compile(r"(\S+)(\s+[\d.]+[xw])?(\s*(?:,|$))")
B64_DATA_URL = re.compile(r"^data:\s*([^\s;,]+)\s*;\s*base64\s*,", re.I)

UNLIKELY_ROLES = frozenset(
    {"menu", "menubar", "complementary", "navigation", "alert", "alertdialog", "dialog"}
)
TAGS_TO_SCORE = frozenset({"section", "h2", "h3", "h4", "h5", "h6", "p", "td", "pre"})
# A div holding any of these is a container, not a paragraph in disguise.
DIV_TO_P_ELEMS = frozenset({"blockquote", "dl", "div", "img", "ol", "p", "pre", "table", "ul"})
ALTER_TO_DIV_EXCEPTIONS = frozenset({"div", "article", "section", "p", "ol", "ul"})
PHRASING = frozenset(
    {
        "abbr", "audio", "b", "bdo", "br", "button", "cite", "code", "data", "datalist", "dfn",
        "em", "embed", "i", "img", "input", "kbd", "label", "mark", "math", "meter",
        "noscript", "object", "output", "progress", "q", "ruby", "samp", "script", "select",
        "small", "span", "strong", "sub", "sup", "textarea", "time", "var", "wbr",
    }
)  # fmt: skip
HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
TEXTISH = frozenset({"span", "li", "td"}) | DIV_TO_P_ELEMS
# Presentational attributes dropped from kept content.
PRESENTATIONAL_ATTRS = (
    "align", "background", "bgcolor", "border", "cellpadding", "cellspacing", "frame",
    "hspace", "rules", "style", "valign", "vspace",
)  # fmt: skip
SIZED_ELEMS = frozenset({"table", "th", "td", "hr", "pre"})

JSONLD_ARTICLE_TYPES = re.compile(
    r"^Article|AdvertiserContentArticle|NewsArticle|AnalysisNewsArticle|"
    r"AskPublicQuestionArticle|BackgroundNewsArticle|OpinionNewsArticle|ReportageNewsArticle|"
    r"ReviewNewsArticle|Report|SatiricalArticle|ScholarlyArticle|MedicalScholarlyArticle|"
    r"SocialMediaPosting|BlogPosting|LiveBlogPosting|DiscussionForumPosting|TechArticle|"
    r"APIReference$"
)
