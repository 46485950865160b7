"""URL validation, address classification and versioned normalisation (SPEC §8).

`validate_url` is the request-time gate of `POST /media/from_url`: it rejects anything that
is not a plain public http(s) URL with `E_INVALID_URL`. `normalise_url` produces the
canonical form used for dedupe; its rules are versioned by `NORMALISER_VERSION` (bump it,
and plan a re-normalisation of stored `canonical_url`s, whenever a rule changes).

`is_public_address` and `parse_host` are shared with the fetcher (`nexus.fetching.fetch`), so
the request-time check and the connect-time check classify addresses identically.

Everything here is pure (no I/O, no DNS).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from nexus.errors import NexusError

NORMALISER_VERSION = 1
MAX_URL_LENGTH = 2048

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_DEFAULT_PORTS = {"http": 80, "https": 443}
_TRACKING_EXACT = frozenset({"gclid", "fbclid", "mc_cid", "mc_eid"})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HOST_ASCII = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")
_NUMERIC_LABEL = re.compile(r"^(0[xX][0-9a-fA-F]*|[0-9]+)$")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_SUB_DELIMS = frozenset("!$&'()*+,;=")
_PATH_SAFE = _UNRESERVED | _SUB_DELIMS | frozenset(":@/")
_QUERY_SAFE = _PATH_SAFE | frozenset("?")
# Inside one query key or value `&` and `=` are structure, so they stay encoded.
_QUERY_PART_SAFE = _QUERY_SAFE - frozenset("&=")
_HEX = frozenset("0123456789abcdefABCDEF")


class InvalidUrl(NexusError):
    def __init__(self, reason: str) -> None:
        super().__init__("E_INVALID_URL", f"invalid URL: {reason}")


@dataclass(frozen=True)
class Host:
    """A parsed host: `name` is lower-case ASCII (IDNA) without brackets; `ip` when literal."""

    name: str
    ip: IPAddress | None


# --- address classification -------------------------------------------------------------


def is_public_address(ip: IPAddress) -> bool:
    """True only for globally routable unicast addresses.

    Blocks loopback, RFC 1918, link-local (incl. 169.254.169.254), CGNAT (100.64/10),
    ULA (fc00::/7), site-local, multicast, reserved, unspecified, documentation and
    benchmarking ranges. IPv6 forms that embed an IPv4 address (IPv4-mapped, 6to4, NAT64)
    are judged by the embedded address as well.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            if not is_public_address(embedded):
                return False
            if ip.ipv4_mapped is not None or ip in _NAT64:
                return True
        if ip.is_site_local:
            return False
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def parse_loose_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Parse a host the way browsers and `inet_aton` do (WHATWG IPv4 parser).

    `2130706433`, `0x7f.1`, `017700000001`, `127.1` all mean 127.0.0.1. Returns None when
    the host does not end in a number (so it is a domain name). Raises `InvalidUrl` when it
    ends in a number but is not a valid address (browsers refuse those too).
    """
    parts = host.split(".")
    if parts and parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if not parts or not _NUMERIC_LABEL.match(parts[-1]):
        return None
    if len(parts) > 4 or not all(_NUMERIC_LABEL.match(p) for p in parts):
        raise InvalidUrl("malformed IPv4 address")
    numbers = [_parse_ipv4_number(p) for p in parts]
    last = numbers.pop()
    if any(n > 255 for n in numbers) or last >= 256 ** (4 - len(numbers)):
        raise InvalidUrl("IPv4 address out of range")
    value = last
    for i, n in enumerate(numbers):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _parse_ipv4_number(part: str) -> int:
    if part[:2] in ("0x", "0X"):
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part.startswith("0"):
        if any(c not in "01234567" for c in part):
            raise InvalidUrl("malformed octal IPv4 part")
        return int(part, 8)
    return int(part)


# --- hosts ------------------------------------------------------------------------------


def parse_host(raw_host: str) -> Host:
    """Lower-case, IDNA-encode and classify a host as it appears in a URL authority."""
    if raw_host.startswith("["):
        if not raw_host.endswith("]"):
            raise InvalidUrl("malformed IPv6 literal")
        try:
            ip6 = ipaddress.IPv6Address(raw_host[1:-1])
        except ValueError:
            raise InvalidUrl("malformed IPv6 literal") from None
        if ip6.scope_id:
            raise InvalidUrl("IPv6 zone identifiers are not allowed")
        return Host(name=str(ip6), ip=ip6)
    host = raw_host.rstrip(".") if raw_host not in ("", ".") else ""
    if not host:
        raise InvalidUrl("a host is required")
    host = _idna(host)
    ip4 = parse_loose_ipv4(host)
    if ip4 is not None:
        return Host(name=str(ip4), ip=ip4)
    if len(host) > 253 or any(len(label) > 63 or not label for label in host.split(".")):
        raise InvalidUrl("host name too long or empty label")
    if not _HOST_ASCII.match(host):
        raise InvalidUrl("host contains invalid characters")
    return Host(name=host, ip=None)


def _idna(host: str) -> str:
    if host.isascii():
        return host.lower()
    import idna  # a dependency of httpx; UTS 46 mapping as browsers do

    try:
        return idna.encode(host, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        raise InvalidUrl("host is not a valid internationalised domain name") from None


def is_local_name(name: str) -> bool:
    """`localhost`, `*.localhost` and mDNS `*.local` never leave the machine or the LAN."""
    return name in ("localhost", "local") or name.endswith((".localhost", ".local"))


def is_allowed_host(host: Host, allow_hosts: Iterable[str]) -> bool:
    """True when the host name, or its literal IP, is on the operator's allow-list.

    Entries are host names (exact, case-insensitive), IP addresses or CIDR networks.
    """
    return host_or_ip_allowed(host.name, host.ip, allow_hosts)


def host_or_ip_allowed(name: str | None, ip: IPAddress | None, allow_hosts: Iterable[str]) -> bool:
    for entry in allow_hosts:
        entry = entry.strip().lower().strip("[]")
        if not entry:
            continue
        if name is not None and entry == name:
            return True
        if ip is not None:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


# --- validation -------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedUrl:
    scheme: str
    host: Host
    port: int | None
    path: str
    query: str


def parse_url(raw: str) -> ParsedUrl:
    """Structural checks shared by validation and normalisation (no address policy)."""
    if not isinstance(raw, str):
        raise InvalidUrl("must be a string")
    url = raw.strip()
    if not url:
        raise InvalidUrl("empty")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidUrl(f"longer than {MAX_URL_LENGTH} characters")
    if _CONTROL.search(url):
        raise InvalidUrl("contains control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidUrl("malformed") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidUrl("scheme must be http or https")
    netloc = parts.netloc
    if "@" in netloc or parts.username is not None:
        raise InvalidUrl("credentials in URLs are not allowed")
    if "\\" in netloc:
        raise InvalidUrl("backslash in host")
    if port == 0:
        raise InvalidUrl("port out of range")
    host_part = netloc
    if host_part.startswith("["):
        host_part = host_part[: host_part.find("]") + 1]
    elif ":" in host_part:
        host_part = host_part.rsplit(":", 1)[0]
    host = parse_host(host_part)
    return ParsedUrl(scheme, host, port, parts.path, parts.query)


def validate_url(raw: str, *, allow_hosts: Iterable[str] = ()) -> str:
    """Return the stripped URL if it may be ingested, else raise `NexusError(E_INVALID_URL)`.

    Rules (SPEC §8): ≤2048 chars, http/https, no userinfo, a host, not `localhost`,
    `*.localhost` or `*.local`, and no literal non-public IP address (any IPv4 spelling,
    IPv6, IPv4-mapped IPv6). Host names are not resolved here: the fetcher re-checks every
    resolved address. `allow_hosts` (`NEXUS_FETCH_ALLOW_HOSTS`) exempts listed hosts/IPs.
    """
    parsed = parse_url(raw)
    host = parsed.host
    if is_allowed_host(host, allow_hosts):
        return raw.strip()
    if host.ip is not None and not is_public_address(host.ip):
        raise InvalidUrl("the address is not public")
    if host.ip is None and is_local_name(host.name):
        raise InvalidUrl("local host names are not allowed")
    return raw.strip()


# --- normalisation ----------------------------------------------------------------------


def normalise_url(url: str) -> str:
    """Canonical form of an http(s) URL, version `NORMALISER_VERSION` (= 1).

    Lower-case scheme and host; IDNA (punycode) host; IPv4 in dotted-quad form; no trailing
    dot on the host; default port dropped; fragment dropped; dot segments removed; empty
    path → `/`; tracking parameters (`utm_*`, `gclid`, `fbclid`, `mc_cid`, `mc_eid`,
    compared case-insensitively) dropped, the others kept in order, empty `&&` pieces and an
    empty `?` dropped; percent-encoding made stable (unreserved characters decoded, hex
    upper-cased, characters outside RFC 3986 encoded as UTF-8). Idempotent. Raises
    `InvalidUrl` for structurally invalid URLs (no address policy: see `validate_url`).
    """
    p = parse_url(url)
    name = f"[{p.host.name}]" if isinstance(p.host.ip, ipaddress.IPv6Address) else p.host.name
    netloc = name if p.port in (None, _DEFAULT_PORTS[p.scheme]) else f"{name}:{p.port}"
    path = _remove_dot_segments(_normalise_component(p.path, _PATH_SAFE)) or "/"
    if not path.startswith("/"):
        path = "/" + path
    query = _normalise_query(p.query)
    return urlunsplit((p.scheme, netloc, path, query, ""))


def is_tracking_param(key: str) -> bool:
    k = key.lower()
    return k.startswith("utm_") or k in _TRACKING_EXACT


def _normalise_query(query: str) -> str:
    kept = []
    for piece in query.split("&"):
        if not piece:
            continue
        key, sep, value = piece.partition("=")
        key = _normalise_component(key, _QUERY_PART_SAFE)
        if is_tracking_param(_percent_decode_ascii(key)):
            continue
        kept.append(key + sep + _normalise_component(value, _QUERY_PART_SAFE))
    return "&".join(kept)


def _percent_decode_ascii(s: str) -> str:
    return re.sub(r"%([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), s)


def _normalise_component(s: str, safe: frozenset[str]) -> str:
    out: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "%":
            if i + 2 < len(s) and s[i + 1] in _HEX and s[i + 2] in _HEX:
                byte = int(s[i + 1 : i + 3], 16)
                ch = chr(byte)
                out.append(ch if ch in _UNRESERVED else f"%{byte:02X}")
                i += 3
                continue
            out.append("%25")
        elif c in safe:
            out.append(c)
        else:
            out.extend(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
        i += 1
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    if "." not in path:
        return path
    segments = path.split("/")
    out: list[str] = []
    for seg in segments:
        if seg == ".":
            continue
        if seg == "..":
            if len(out) > 1:
                out.pop()
            continue
        out.append(seg)
    if segments[-1] in (".", ".."):
        out.append("")
    result = "/".join(out)
    return result if result.startswith("/") or not path.startswith("/") else "/" + result
