"""Small text helpers shared by the stages."""

from __future__ import annotations

import hashlib
import re
import unicodedata

import lxml.html
import regex
from lxml.etree import ParserError

_SPACE = re.compile(r"\s+")
_SURROGATE = re.compile("[\ud800-\udfff]")
_NON_WORD = regex.compile(r"[^\w\s]")  # regex's \w keeps marks (Devanagari vowel signs, Arabic harakat)


def scrub(text: str) -> str:
    """Text that UTF-8 (and so Parquet) can store: lone UTF-16 surrogates, which feeds and JSON produce from
    escapes such as ``&#xD800;`` or ``\\ud800``, become U+FFFD."""
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


def clean(text: str | None) -> str | None:
    """Collapse whitespace; empty becomes None."""
    if text is None:
        return None
    text = _SPACE.sub(" ", text).strip()
    return text or None


def html_to_text(fragment: str | None) -> str | None:
    """Plain text of an HTML fragment such as a feed summary."""
    if not fragment:
        return None
    if "<" not in fragment:
        return clean(fragment)
    try:
        return clean(lxml.html.fromstring(fragment).text_content())
    except (ParserError, ValueError):
        return clean(re.sub(r"<[^>]+>", " ", fragment))


def normalise(text: str) -> str:
    """Text with case, accents' compatibility forms, punctuation and whitespace folded."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _SPACE.sub(" ", _NON_WORD.sub(" ", text)).strip()


def content_hash(text: str) -> str:
    return hashlib.sha256(normalise(text).encode()).hexdigest()[:32]
