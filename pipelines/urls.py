"""URL canonicalisation and the stable ids derived from it.

Two links to the same article must canonicalise to the same string: scheme and host lower-cased,
default ports and fragments dropped, tracking parameters (``utm_*``, ``fbclid``, ``gclid`` …) removed
and the remaining query parameters sorted. ``courlan`` does the normalisation.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urljoin, urlsplit, urlunsplit

from courlan import normalize_url


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
