"""The ExtractArticles stage: Page -> Article.

Each page is parsed once into an lxml tree. The metadata the page declares (``pipelines.pagemeta``:
title, authors, date, language, canonical link, ...) is read from it, then trafilatura extracts the
main text (reader comments excluded, precision favoured) from the same tree. The page's metadata wins;
the feed entry fills what the page lacks. The page's declared canonical URL identifies the article only when
it names the same page on the same site (``urls.identifying_url``); otherwise its own final URL does, and the
article says why (``canonical_ignored``). A publication time after the fetch (a time-zone slip, a scheduled
post) is capped at the fetch time; the claim is kept in ``claimed_published_at``. A page with no article
text becomes a ``Reject`` (stage ``extract``). Pure per element: no ordering or cross-article state.
"""

from __future__ import annotations

import codecs
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import apache_beam as beam
from charset_normalizer import from_bytes
from charset_normalizer.md import mess_ratio

from pipelines import metrics
from pipelines.config import ExtractConfig
from pipelines.failures import Guarded
from pipelines.figures import figures
from pipelines.pagemeta import page_meta
from pipelines.records import Article, Page, Reject
from pipelines.text import clean, content_hash
from pipelines.urls import article_id, host_of, identifying_url, is_web_url, resolve_url
from pipelines.words import words

REJECTS = "rejects"

# A page is empty when its text has fewer words (with a letter or digit) than this, in any script (``words``
# segments scripts written without spaces): a menu ("Home | News"), a caption. A news brief of one short
# sentence under its headline is an article ("地震造成三人死亡" is four words).
MIN_WORDS = 3


class ExtractError(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.I)
# Browsers read these labels as windows-1252 (WHATWG Encoding); so do the pages written for them.
_AS_CP1252 = {"iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "us-ascii", "ascii", "windows-1252"}


# Decoded text whose mess ratio (charset-normalizer's measure of implausible character sequences) is above
# this was decoded with the wrong charset: correctly decoded pages of every script measure 0-0.05, Cyrillic,
# Greek or Hebrew read as windows-1252 0.2 and more, CJK and Arabic 0.3-1.9.
MAX_MESS = 0.1


def decode(body: bytes, content_type: str | None) -> str | bytes:
    """The page as text: BOM, then valid UTF-8 (however the page is labelled: a mislabelled UTF-8 page is
    common, while other encodings of non-ASCII text are practically never valid UTF-8), then the header's
    charset, then a <meta> charset, then windows-1252 (the Web's default legacy encoding), each only if the
    text it gives is plausible; otherwise the charset that charset-normalizer detects (on mostly-ASCII Latin
    pages detection is unreliable, which is why it comes last). Bytes only when nothing decodes."""
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            return body.decode(encoding, errors="replace")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    declared = []
    if content_type and "charset=" in content_type.lower():
        declared.append(content_type.lower().split("charset=")[-1].split(";")[0].strip().strip("\"'"))
    meta = _META_CHARSET.search(body[:4096])
    if meta:
        declared.append(meta.group(1).decode("ascii", "ignore").lower())
    fallback: tuple[float, str] | None = None  # the least messy decoding, should detection fail
    for charset in [*declared, "cp1252"]:
        try:
            text = body.decode("cp1252" if charset in _AS_CP1252 else charset)
        except (LookupError, UnicodeDecodeError):
            continue
        mess = mess_ratio(text, MAX_MESS)
        if mess <= MAX_MESS:
            return text
        fallback = min(fallback or (mess, text), (mess, text), key=lambda m: m[0])
    detected = from_bytes(body).best()
    if detected is not None and (fallback is None or detected.chaos < fallback[0]):
        return str(detected)
    return fallback[1] if fallback is not None else body


def extract_article(page: Page, same_site: tuple[tuple[str, ...], ...] = ()) -> Article:
    """The article on a page, or ExtractError. ``same_site``: groups of domains that are one site, whose pages
    may name their canonical URL on each other (``urls.identifying_url``)."""
    # imported on first use: a run that finds nothing new never needs trafilatura (a tenth of a second)
    from trafilatura import bare_extraction
    from trafilatura.settings import Document
    from trafilatura.utils import load_html

    try:
        tree = load_html(decode(page.body, page.content_type))
    except Exception as e:  # lxml raises a zoo of types on hostile input
        raise ExtractError("extraction_error", f"unparseable HTML: {e}") from None
    if tree is None:
        raise ExtractError("empty_extraction", "no HTML document found")
    meta = page_meta(tree, page.final_url)
    try:
        doc = bare_extraction(tree, url=page.final_url, include_comments=False, favor_precision=True)
    except Exception as e:  # trafilatura's failures are not typed
        raise ExtractError("extraction_error", f"{type(e).__name__}: {e}") from None
    if not isinstance(doc, Document):
        raise ExtractError("empty_extraction", "no article text found")
    text = _without_headline((doc.text or "").strip(), meta.title, tree)
    found = words(text)
    readable = sum(1 for w in found if any(c.isalnum() for c in w))  # "|" is a token, not a word to read
    if readable < MIN_WORDS:
        raise ExtractError("empty_extraction", f"{readable} words of article text")
    count = len(found)

    entry = page.entry
    canonical, canonical_ignored = identifying_url(meta.canonical, page.final_url, same_site)
    authors = _authors("; ".join(meta.authors)) or _authors(entry.author)
    claimed = _published(meta.date, entry.published_at)
    published = min(claimed, page.fetched_at) if claimed else None  # nothing is published after we fetched it
    title = meta.title or entry.title
    return Article(
        article_id=article_id(canonical),
        url=entry.link,
        final_url=page.final_url,
        canonical_url=canonical,
        feed_url=entry.feed_url,
        source=outlet(entry.feed_name, meta.site_name, entry.feed_title, page.final_url),
        title=title,
        authors=authors,
        published_at=published,
        fetched_at=page.fetched_at,
        language=meta.language,
        summary=entry.summary or meta.description,
        text=text,
        word_count=count,
        content_hash=content_hash(text),
        description=meta.description,
        image_url=_image_url(page.final_url, meta.image),
        tags=meta.tags or None,
        claimed_published_at=claimed if claimed != published else None,
        canonical_ignored=canonical_ignored,
        figures=figures("\n\n".join(filter(None, (title, text))), meta.language,
                        (published or page.fetched_at).date()),
    )


def outlet(feed_name: str | None, site_name: str | None, feed_title: str | None, url: str) -> str:
    """The outlet's name, by the documented precedence: the config's name for the feed, the page's site name,
    the feed's title, the page's host without www."""
    return feed_name or site_name or feed_title or host_of(url)


def _without_headline(text: str, title: str | None, tree) -> str:
    """The body without a first line that repeats the headline (pages' <h1>); the headline is ``title``.

    When that line is all there is, the page either has no body (nothing but its headline: empty) or is a
    brief whose one sentence is its headline (extraction keeps one of the two): then the sentence is in the
    page's text outside its headings, and it is the body."""
    first, _, rest = text.partition("\n")
    if not title or first.strip() != title.strip():
        return text
    if rest.strip():
        return rest.strip()
    outside = " ".join(tree.xpath("//body//text()[not(ancestor::h1 or ancestor::h2 or ancestor::h3 or "
                                  "ancestor::header or ancestor::script or ancestor::style)]"))
    return text if " ".join(title.split()) in " ".join(outside.split()) else ""


def _image_url(page_url: str, image: str | None) -> str | None:
    url = resolve_url(page_url, image) if image else None
    return url if url and is_web_url(url) else None


def _authors(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    parts = re.split(r";|\band\b|,(?=\s*[A-Z])", value)
    seen: dict[str, None] = {}
    for part in parts:
        name = clean(re.sub(r"^\s*by\s+", "", part, flags=re.I))
        if name:
            seen.setdefault(name, None)
    return tuple(seen)


def _published(page_date: str | None, entry_time: datetime | None) -> datetime | None:
    """The entry's precise timestamp when it agrees with the page's date; else the page's date."""
    if page_date:
        try:
            day = datetime.fromisoformat(page_date[:10]).replace(tzinfo=UTC)
        except ValueError:
            day = None
        if day is not None:
            if entry_time is not None and entry_time.date() == day.date():
                return entry_time
            return day
    return entry_time


class _ExtractFn(beam.DoFn):
    def __init__(self, same_site: tuple[tuple[str, ...], ...]):
        self._same_site = same_site

    def setup(self) -> None:
        # trafilatura logs an ERROR for every page it cannot use; here each one is a reject row already
        logging.getLogger("trafilatura").setLevel(logging.CRITICAL)

    def process(self, page: Page) -> Iterator:
        try:
            article = extract_article(page, self._same_site)
        except ExtractError as e:
            yield beam.pvalue.TaggedOutput(REJECTS, Reject(page.entry.link, page.entry.feed_url, "extract",
                                                           e.reason, e.detail, datetime.now(UTC)))
            return
        metrics.inc("articles_extracted")
        yield article


class ExtractArticles(beam.PTransform):
    """Page -> ``articles`` (Article) and ``rejects`` (Reject, stage ``extract``)."""

    def __init__(self, config: ExtractConfig | None = None):
        super().__init__()
        self._same_site = (config or ExtractConfig()).same_site

    def expand(self, pages):
        return pages | "Extract" >> Guarded(beam.ParDo(_ExtractFn(self._same_site)), "extract", REJECTS,
                                            main="articles")
