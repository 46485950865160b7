"""SPEC §8: URL validation (E_INVALID_URL), address classification, normaliser v1."""

from __future__ import annotations

import ipaddress

import pytest

from nexus.errors import NexusError
from nexus.fetching.urls import (
    NORMALISER_VERSION,
    is_public_address,
    normalise_url,
    parse_loose_ipv4,
    validate_url,
)


def invalid(raw: str, **kwargs: object) -> NexusError:
    with pytest.raises(NexusError) as info:
        validate_url(raw, **kwargs)  # type: ignore[arg-type]
    assert info.value.code == "E_INVALID_URL"
    return info.value


# --- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "https://example.com/a/b?c=d#e",
        "HTTPS://EXAMPLE.COM/",
        "https://bücher.example/",
        "http://93.184.216.34/",
        "http://[2606:2800:220:1::1]/",
        "https://example.com:8443/x",
        "  https://example.com/padded  ",
        "https://sub_domain.example.com/",
        "http://8.8.8.8./",
    ],
)
def test_valid_urls(url: str) -> None:
    assert validate_url(url) == url.strip()


def test_length_limit() -> None:
    base = "https://example.com/"
    assert validate_url(base + "a" * (2048 - len(base)))
    invalid(base + "a" * (2049 - len(base)))


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "example.com",
        "//example.com/",
        "ftp://example.com/",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "data:text/html,hi",
        "gopher://example.com/",
        "http://user@example.com/",
        "http://user:pass@example.com/",
        "http://:@example.com/",
        "http://evil.com\\@127.0.0.1/",
        "http:///path",
        "http://",
        "http://:80/",
        "http://exa mple.com/",
        "http://example.com:0/",
        "http://example.com:99999/",
        "http://example.com:abc/",
        "http://example.com/\nfoo",
        "http://example.com/\x00",
        "http://[::1/",
        "http://[fe80::1%25eth0]/",
        "http://-bad-.ex!ample.com/",
        "http://" + "a" * 64 + ".com/",
    ],
)
def test_structurally_invalid(url: str) -> None:
    invalid(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.255.255.254/",
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://172.31.255.255/",
        "http://192.168.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",  # CGNAT
        "http://100.127.255.254/",
        "http://0.0.0.0/",
        "http://0/",
        "http://224.0.0.1/",  # multicast
        "http://239.255.255.250/",
        "http://240.0.0.1/",  # reserved
        "http://255.255.255.255/",
        "http://192.0.2.1/",  # documentation
        "http://198.18.0.1/",  # benchmarking
        "http://[::1]/",
        "http://[::]/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[fd12:3456::1]/",
        "http://[ff02::1]/",
        "http://[fec0::1]/",  # site-local (deprecated)
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
        "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
        "http://[2001:db8::1]/",
        # Other spellings of 127.0.0.1 that browsers and inet_aton accept.
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0x7f.1/",
        "http://0x7F.0.0.1/",
        "http://017700000001/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://127.0.1/",
        "http://127.0.0.1./",
        "http://2852039166/",  # 169.254.169.254
        "http://0xa9fea9fe/",
        "http://0251.0376.0251.0376/",
        # Names that never leave the machine or the LAN.
        "http://localhost/",
        "http://LOCALHOST:8000/",
        "http://localhost./",
        "http://foo.localhost/",
        "http://printer.local/",
        "http://My-Mac.LOCAL./",
    ],
)
def test_non_public_literals_and_local_names(url: str) -> None:
    invalid(url)


@pytest.mark.parametrize(
    "url", ["http://256.0.0.1/", "http://1.2.3.4.5/", "http://08.0.0.1/", "http://0x1g.1/"]
)
def test_malformed_numeric_hosts(url: str) -> None:
    invalid(url)


def test_allow_hosts_exempts_listed_hosts_and_ips_only() -> None:
    allow = ["127.0.0.1", "Pages.Test", "10.20.0.0/16"]
    assert validate_url("http://127.0.0.1:8123/x", allow_hosts=allow)
    assert validate_url("http://0x7f.1:8123/x", allow_hosts=allow)  # same address
    assert validate_url("http://pages.test/", allow_hosts=allow)
    assert validate_url("http://10.20.3.4/", allow_hosts=allow)
    invalid("http://127.0.0.2/", allow_hosts=allow)
    invalid("http://localhost/", allow_hosts=allow)
    invalid("http://10.21.0.1/", allow_hosts=allow)
    invalid("ftp://127.0.0.1/", allow_hosts=allow)
    invalid("http://u:p@127.0.0.1/", allow_hosts=allow)


# --- classification ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("93.184.216.34", True),
        ("1.1.1.1", True),
        ("2606:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::808:808", True),
        ("2002:808:808::1", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("100.64.0.0", False),
        ("169.254.0.1", False),
        ("224.1.1.1", False),
        ("::ffff:192.168.0.1", False),
        ("2001::1", False),  # Teredo
        ("::127.0.0.1", False),  # IPv4-compatible (deprecated)
        ("ff0e::1", False),
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("1.2.3", "1.2.0.3"),
        ("0", "0.0.0.0"),
        ("0x", "0.0.0.0"),
        ("example.com", None),
        ("1.example", None),
        ("example.123x", None),
    ],
)
def test_loose_ipv4(host: str, expected: str | None) -> None:
    parsed = parse_loose_ipv4(host)
    assert (str(parsed) if parsed else None) == expected


# --- normalisation ----------------------------------------------------------------------


def test_version() -> None:
    assert NORMALISER_VERSION == 1


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HTTP://Example.COM", "http://example.com/"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:443/a", "http://example.com:443/a"),
        ("https://example.com:8443", "https://example.com:8443/"),
        ("http://example.com./a", "http://example.com/a"),
        ("http://example.com/a#frag", "http://example.com/a"),
        ("http://example.com/a?", "http://example.com/a"),
        ("http://example.com/a/./b/../c", "http://example.com/a/c"),
        ("http://example.com/../a", "http://example.com/a"),
        ("http://example.com/a/", "http://example.com/a/"),
        ("http://example.com/A/B", "http://example.com/A/B"),
        ("https://Bücher.Example/straße", "https://xn--bcher-kva.example/stra%C3%9Fe"),
        ("https://xn--bcher-kva.example/", "https://xn--bcher-kva.example/"),
        ("http://0x7f.1/", "http://127.0.0.1/"),
        ("http://[::FFFF:7F00:1]:8080/", "http://[::ffff:7f00:1]:8080/"),
        ("http://[2001:DB8:0:0::1]/", "http://[2001:db8::1]/"),
        # percent-encoding: unreserved decoded, hex upper-cased, reserved kept encoded
        ("http://example.com/%7euser/%41%2f%2F", "http://example.com/~user/A%2F%2F"),
        ("http://example.com/a b", "http://example.com/a%20b"),
        ("http://example.com/%zz", "http://example.com/%25zz"),
        ("http://example.com/é?q=é", "http://example.com/%C3%A9?q=%C3%A9"),
        ("http://example.com/?q=a%26b&r=%3d", "http://example.com/?q=a%26b&r=%3D"),
        ("http://example.com/?q=a+b", "http://example.com/?q=a+b"),
        # tracking parameters
        (
            "https://example.com/p?utm_source=tw&id=7&utm_medium=social&gclid=X&fbclid=Y"
            "&mc_cid=1&mc_eid=2&b=2&UTM_Campaign=z",
            "https://example.com/p?id=7&b=2",
        ),
        ("https://example.com/p?utm_source=x", "https://example.com/p"),
        ("https://example.com/p?b=2&a=1&a=0", "https://example.com/p?b=2&a=1&a=0"),
        ("https://example.com/p?a=1&&b=&c", "https://example.com/p?a=1&b=&c"),
        ("https://example.com/p?utm=keep&utmx=keep", "https://example.com/p?utm=keep&utmx=keep"),
        ("https://example.com/p?%75tm_source=x&k=v", "https://example.com/p?k=v"),
        ("https://example.com/p?gclidx=1", "https://example.com/p?gclidx=1"),
    ],
)
def test_normalise(raw: str, expected: str) -> None:
    assert normalise_url(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "HTTP://Example.COM:80/a/./b/../%7e?utm_source=x&z=%e9&a=1#f",
        "https://Bücher.example/ä ö?ü=1",
        "http://example.com/%2F%252F?x=%25",
        "http://[::ffff:127.0.0.1]/",
    ],
)
def test_normalise_is_idempotent(raw: str) -> None:
    once = normalise_url(raw)
    assert normalise_url(once) == once


def test_equivalent_urls_normalise_equal() -> None:
    variants = [
        "https://example.com/article?id=5",
        "HTTPS://EXAMPLE.COM:443/article?id=5#comments",
        "https://example.com/./article?utm_source=newsletter&id=5&fbclid=abc",
        "https://example.com./%61rticle?id=%35",
    ]
    assert len({normalise_url(v) for v in variants}) == 1


def test_normalise_rejects_invalid() -> None:
    with pytest.raises(NexusError):
        normalise_url("ftp://example.com/")
