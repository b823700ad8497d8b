"""URL canonicalisation and the stable ids derived from it.

Two links to the same article must canonicalise to the same string: scheme and host lower-cased,
default ports and fragments dropped, tracking parameters (``utm_*``, ``fbclid``, ``gclid`` …) removed
and the remaining query parameters sorted. ``courlan`` does the normalisation.

A page's declared canonical URL is a claim, and an article's id comes from the URL that identifies it, so a
claim is trusted (``identifying_url``) only when it is a valid URL for the same page: on the page's site (its
registrable domain, from the Public Suffix List that ``tld`` bundles, or a group of domains the config names
as one site), with the same path, and query parameters the page's own URL has (it may drop some, never add
or change one). Otherwise one page could take another's id (a page at ``/canon/other`` declaring ``/a/b0``),
or one site another outlet's, and the page's own final URL identifies it instead.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urljoin, urlsplit, urlunsplit

from courlan import normalize_url
from tld import get_fld

MAX_URL = 2048  # characters; longer "URLs" are data, not addresses
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", re.I)


def is_web_url(url: str) -> bool:
    """An http(s) URL with a host; never raises, whatever the input (feeds and pages are hostile)."""
    try:
        parts = urlsplit(url)
        return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. an unclosed IPv6 literal
        return False


def resolve_url(base: str, reference: str) -> str | None:
    """``reference`` resolved against ``base``; None when either cannot be parsed."""
    try:
        return urljoin(base, reference.strip())
    except ValueError:
        return None


def canonicalize(url: str) -> str:
    """The canonical form of an http(s) URL; other strings come back stripped but unchanged."""
    url = url.strip()
    if not is_web_url(url):
        return url
    try:
        normal = normalize_url(url)
    except ValueError:
        normal = url
    parts = urlsplit(normal)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))


def stable_id(kind: str, key: str) -> str:
    """A 16-hex-digit id, the same on every run and every worker for the same key."""
    return hashlib.blake2b(f"{kind}:{key}".encode(), digest_size=8).hexdigest()


def article_id(canonical_url: str) -> str:
    return stable_id("article", canonical_url)


def host_of(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    return host.removeprefix("www.")


def valid_web_url(url: str) -> bool:
    """An http(s) URL a browser would follow: at most ``MAX_URL`` characters, a host of valid labels (IDNA
    for other scripts) or an IP literal, a port that exists; never raises."""
    if len(url) > MAX_URL or not is_web_url(url) or any(c.isspace() for c in url):
        return False
    try:
        parts = urlsplit(url)
        _ = parts.port  # ValueError when out of range or not a number
        host = parts.hostname or ""
        if host.startswith("[") or ":" in host or host.replace(".", "").isdigit():
            return True  # an IP literal (urlsplit checked its brackets)
        ascii_host = host.encode("idna").decode("ascii")
    except (ValueError, UnicodeError):
        return False
    labels = ascii_host.rstrip(".").split(".")
    return len(ascii_host) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


def site_of(url: str) -> str:
    """The registrable domain of a URL's host (``news.bbc.co.uk`` -> ``bbc.co.uk``); for a name under no
    known public suffix (``.example``, ``.internal``) its last two labels; for an IP address, itself."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if ":" in host or host.replace(".", "").isdigit():
        return host
    return get_fld(host, fix_protocol=True, fail_silently=True) or ".".join(host.split(".")[-2:])


def identifying_url(declared: str | None, final_url: str,
                    same_site: Iterable[Iterable[str]] = ()) -> tuple[str, str | None]:
    """The canonical URL that identifies a page fetched at ``final_url`` whose markup declares ``declared``
    as its canonical: the declaration when it is trusted (see the module's doc), else ``final_url``
    canonicalised; and, when a declaration was not used, why (None otherwise). ``same_site``: groups of
    registrable domains that are one site."""
    own = canonicalize(final_url)
    if not declared:
        return own, None
    if not valid_web_url(declared):
        return own, f"{declared[:200]}: not a valid URL"
    claim = canonicalize(declared)
    if claim == own:
        return own, None
    sites = {site_of(claim), site_of(own)}
    if len(sites) > 1 and not any(sites <= {d.lower() for d in group} for group in same_site):
        return own, f"{claim[:200]}: on another site ({site_of(claim)}) than the page ({site_of(own)})"
    claimed, page = urlsplit(claim), urlsplit(own)
    if claimed.path.rstrip("/") != page.path.rstrip("/"):
        return own, f"{claim[:200]}: another page of the site (its path differs from the page's)"
    if not set(parse_qsl(claimed.query, keep_blank_values=True)) <= set(parse_qsl(page.query, keep_blank_values=True)):
        return own, f"{claim[:200]}: another page of the site (a query parameter the page's URL lacks)"
    return claim, None
