"""Every sanitising rule, fed hostile input."""

from __future__ import annotations

import lxml.html
import pytest

from nexus.extraction.sanitize import ALLOWED_ATTRIBUTES, ALLOWED_TAGS, safe_url, sanitize_html

BASE = "https://example.com/blog/post.html"


def _tree(html: str) -> lxml.html.HtmlElement:
    return lxml.html.fragment_fromstring(html, create_parent="div")


def _attrs(html: str) -> list[tuple[str, str, str]]:
    return [(el.tag, k, v) for el in _tree(html).iter() for k, v in el.attrib.items()]


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "  javascript:alert(1)",
        "\tjava\nscript:alert(1)",
        "java&#x09;script:alert(1)",
        "&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)",
        "&#x6A;avascript&colon;alert(1)",
        "javascript&#58;alert(1)",
        "vbscript:msgbox(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "DATA:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "\x01javascript:alert(1)",
    ],
)
def test_dangerous_link_schemes_are_dropped(href: str) -> None:
    out = sanitize_html(f'<a href="{href}">click</a>', BASE)
    assert "href" not in out
    assert "click" in out
    assert "script:" not in out.lower()


@pytest.mark.parametrize(
    "src",
    [
        "data:image/png;base64,iVBORw0KGgo=",
        " DATA:image/svg+xml,<svg onload=alert(1)>",
        "javascript:alert(1)",
        "mailto:someone@example.com",
        "http://example.com/a.png",
        "HTTP://example.com/a.png",
    ],
)
def test_image_src_must_be_https(src: str) -> None:
    out = sanitize_html(f'<img src="{src}" alt="pic">', BASE)
    assert "src=" not in out
    assert 'alt="pic"' in out


def test_event_handlers_and_style_are_removed() -> None:
    out = sanitize_html(
        '<p onclick="alert(1)" style="background:url(javascript:x)" class="c" id="i">'
        '<img src="/a.png" onerror="alert(1)" onload="x()" srcset="/b.png 2x">t</p>',
        BASE,
    )
    assert sorted(_attrs(out)) == [
        ("img", "loading", "lazy"),
        ("img", "referrerpolicy", "no-referrer"),
        ("img", "src", "https://example.com/a.png"),
    ]
    assert "on" not in "".join(k for _, k, _ in _attrs(out))


def test_images_send_no_referrer_and_load_lazily_whatever_the_page_said() -> None:
    html = (
        '<img src="/a.png" referrerpolicy="unsafe-url" loading="eager" alt="a">'
        '<img src="https://cdn.example/b.png" alt="b">'
        '<a title="&quot;x&quot;" href="/l">loading="lazy" referrerpolicy="no-referrer"&gt;</a>'
    )
    out = sanitize_html(html, BASE)
    images = [el for el in _tree(out).iter("img")]
    assert [(i.get("src"), i.get("referrerpolicy"), i.get("loading")) for i in images] == [
        ("https://example.com/a.png", "no-referrer", "lazy"),
        ("https://cdn.example/b.png", "no-referrer", "lazy"),
    ]
    link = next(_tree(out).iter("a"))
    assert link.get("title") == '"x"'
    assert link.text == 'loading="lazy" referrerpolicy="no-referrer">'
    # Deterministic: the same input always gives the same text, and the output is a fixpoint.
    assert {sanitize_html(html, BASE) for _ in range(20)} == {out}
    assert sanitize_html(out, BASE) == out


def test_http_pages_keep_their_text_but_not_their_plain_http_images() -> None:
    out = sanitize_html('<p>t<img src="/a.png" alt="pic"></p>', "http://plain.example/")
    assert "src=" not in out and 'alt="pic"' in out and "<p>t" in out


def test_script_style_and_friends_go_with_their_content() -> None:
    out = sanitize_html(
        "<p>a<script>alert(1)</script>b<style>p{}</style>c"
        "<noscript>ns</noscript><template>tp</template><textarea>ta</textarea></p>"
        "<svg><script>alert(2)</script><text>svgtext</text></svg>"
        "<math><mi>x</mi></math><object data=x>obj</object><embed src=y>",
        BASE,
    )
    text = _tree(out).text_content()
    assert text == "abc"
    for tag in ("script", "style", "svg", "object", "embed", "noscript", "template"):
        assert f"<{tag}" not in out


def test_nested_iframes_vanish() -> None:
    out = sanitize_html(
        '<div><iframe src="https://evil.example/"><iframe srcdoc="<script>alert(1)</script>">'
        "</iframe></iframe>after</div>",
        BASE,
    )
    assert "iframe" not in out
    assert "alert" not in out
    assert "after" in out


def test_unknown_tags_are_unwrapped_keeping_text() -> None:
    out = sanitize_html("<custom-el><form><input value=x>kept <blink>text</blink></form>", BASE)
    assert out == "kept text"


def test_relative_links_become_absolute_with_rel() -> None:
    out = sanitize_html(
        '<a href="../about">a</a><a href="/root">b</a><a href="#top">c</a>'
        '<a href="//cdn.example.org/x">d</a><a href="?q=1">e</a>',
        BASE,
    )
    links = [a for a in _tree(out).iter("a")]
    assert [a.get("href") for a in links] == [
        "https://example.com/about",
        "https://example.com/root",
        "https://example.com/blog/post.html#top",
        "https://cdn.example.org/x",
        "https://example.com/blog/post.html?q=1",
    ]
    assert all(a.get("rel") == "noopener noreferrer" for a in links)


def test_rel_and_target_from_the_page_are_replaced() -> None:
    out = sanitize_html('<a href="https://x.org/" rel="opener" target="_blank">x</a>', BASE)
    assert out == '<a href="https://x.org/" rel="noopener noreferrer">x</a>'


def test_relative_image_src_becomes_absolute() -> None:
    out = sanitize_html('<figure><img src="img/p.jpg" alt="a"><figcaption>c</figcaption>', BASE)
    assert 'src="https://example.com/blog/img/p.jpg"' in out
    assert "<figcaption>c</figcaption>" in out


def test_mailto_links_are_kept() -> None:
    out = sanitize_html('<a href="mailto:ed@example.com">mail</a>', BASE)
    assert 'href="mailto:ed@example.com"' in out


def test_without_base_relative_urls_are_dropped() -> None:
    out = sanitize_html('<a href="/x">x</a><img src="y.png">', "")
    assert "href" not in out and "src" not in out


def test_comments_and_conditional_comments_are_removed() -> None:
    out = sanitize_html("<p>a<!-- secret --><!--[if IE]><script>x</script><![endif]-->b</p>", BASE)
    assert out == "<p>ab</p>"


def test_reading_tags_survive() -> None:
    html = (
        "<h2>t</h2><p><em>e</em><strong>s</strong><b>b</b><i>i</i><u>u</u><sup>1</sup>"
        '<sub>2</sub><code>c</code><br></p><ul><li>x</li></ul><ol start="3"><li>y</li></ol>'
        '<blockquote>q</blockquote><pre>p</pre><hr><table><thead><tr><th colspan="2">h</th>'
        '</tr></thead><tbody><tr><td rowspan="1">d</td></tr></tbody></table>'
    )
    assert sanitize_html(html, BASE) == html.replace("<br>", "<br>")


def test_markup_breakouts_are_neutralised() -> None:
    out = sanitize_html(
        '<p title="x&quot; onmouseover=&quot;alert(1)">t</p><<script>x</script>', BASE
    )
    tree = _tree(out)
    assert [k for el in tree.iter() for k in el.attrib] == ["title"]
    assert "<script" not in out


def test_idempotent() -> None:
    html = '<p onclick=x>a <a href="/r">b</a><img src="i.png"><script>z</script></p>'
    once = sanitize_html(html, BASE)
    assert sanitize_html(once, BASE) == once
    assert sanitize_html(once, "") == once


def test_allow_lists_hold_no_dangerous_entries() -> None:
    assert not {"script", "style", "iframe", "object", "embed", "svg", "form"} & ALLOWED_TAGS
    allowed = {a for attrs in ALLOWED_ATTRIBUTES.values() for a in attrs}
    assert not {a for a in allowed if a.startswith("on")}
    assert not {"style", "srcset", "class", "id", "target"} & allowed


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://a.example/x", "https://a.example/x"),
        ("x", "https://example.com/blog/x"),
        ("http://[::1", None),
        ("javascript://%0aalert(1)", None),
        ("", None),
        ("  ", None),
    ],
)
def test_safe_url(value: str, expected: str | None) -> None:
    assert safe_url(value, BASE, frozenset({"http", "https"})) == expected
