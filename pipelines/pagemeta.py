"""The metadata a page declares about itself: <meta> tags, JSON-LD and a few standard elements.

Part of the extract stage. One pass over the parsed tree's <meta> elements and JSON-LD scripts, then
htmldate for the publication date (markup and URL only). trafilatura's heuristic searches of the body
(bylines without markup, category links, licences) are left out on purpose: on the extraction benchmark
they took a quarter of the stage's time, and the feed entry supplies the author a page does not declare.

Precedence per field: JSON-LD of the article object, then Open Graph / article:*, then Twitter, Dublin
Core and plain <meta name>, then elements (a rel=author / itemprop=author byline, <h1>, <title>).
Pure; never raises on hostile input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from html import unescape

from pipelines.text import clean
from pipelines.urls import is_web_url, resolve_url

MAX_JSON_LD = 200_000  # characters per script; larger ones are not metadata
_ARTICLE_TYPES = re.compile(r"(Article|BlogPosting|Report|Posting|Story)$", re.I)
_TITLE_SEPARATORS = re.compile(r"\s+[|–—·:»-]\s+")
_LANG = re.compile(r"^[a-zA-Z]{2,3}(?=$|[-_])")
_BY = re.compile(r"^\s*by\s+", re.I)
MAX_BYLINE = 80  # characters; longer "author" elements are bios or whole blocks, not names
MAX_TAG_LINKS = 30


@dataclass(frozen=True)
class PageMeta:
    title: str | None = None
    authors: tuple[str, ...] = ()  # as declared: one entry may still name several people
    date: str | None = None  # YYYY-MM-DD
    site_name: str | None = None
    description: str | None = None
    image: str | None = None
    tags: tuple[str, ...] = ()
    language: str | None = None  # ISO 639 code, lower case, without region
    canonical: str | None = None  # rel=canonical, else og:url, as declared (resolved against the page's URL)


def page_meta(tree, url: str | None = None) -> PageMeta:
    """The page's declared metadata; fields it does not declare are empty."""
    meta = _meta_tags(tree)
    ld = _json_ld_article(tree)
    site_name = (next(iter(_names(ld.get("publisher"))), None)
                 or _first(meta, "og:site_name", "application-name", "twitter:site"))
    return PageMeta(
        title=_title(tree, ld, meta, site_name),
        authors=_names(ld.get("author")) or _meta_authors(meta) or _byline(tree),
        date=_date(tree, url),
        site_name=site_name,
        description=_text(ld.get("description")) or _first(meta, "og:description", "description",
                                                           "twitter:description", "dc.description"),
        image=_url(ld.get("image")) or _first(meta, "og:image", "og:image:url", "og:image:secure_url",
                                              "twitter:image", "twitter:image:src"),
        tags=tuple(_unique([*_words(ld.get("articleSection")), *_words(ld.get("keywords")),
                      *meta.get("article:section", []), *meta.get("article:tag", []),
                      *meta.get("keywords", []), *meta.get("news_keywords", [])]) or _tag_links(tree)),
        language=_language(tree, meta),
        canonical=_canonical(tree, meta, url),
    )


def _meta_tags(tree) -> dict[str, list[str]]:
    """<meta> content by lower-cased property / name / itemprop, in document order."""
    out: dict[str, list[str]] = {}
    for element in tree.iter("meta"):
        content = clean(unescape(element.get("content") or ""))  # pages often escape entities twice
        if not content:
            continue
        for attribute in ("property", "name", "itemprop", "http-equiv"):
            key = (element.get(attribute) or "").strip().lower()
            if key:
                out.setdefault(key, []).append(content)
    return out


def _first(meta: dict[str, list[str]], *keys: str) -> str | None:
    for key in keys:
        for value in meta.get(key, []):
            value = value.lstrip("@") if key == "twitter:site" else value
            if value:
                return value
    return None


def _meta_authors(meta: dict[str, list[str]]) -> tuple[str, ...]:
    values = [_BY.sub("", v) for key in ("author", "article:author", "parsely-author", "sailthru.author",
                                         "dc.creator", "byl")
              for v in meta.get(key, []) if not v.startswith(("http://", "https://"))]
    return tuple(_unique(values, split=False))


def _byline(tree) -> tuple[str, ...]:
    """Names in elements marked as the author (rel="author", itemprop="author"): short texts only."""
    for element in tree.xpath('//*[@rel="author" or @itemprop="author"]')[:10]:
        named = element.xpath('.//*[@itemprop="name"]')
        text = clean(_BY.sub("", (named[0] if named else element).text_content()))
        # the first is the article's byline; later ones are usually reader comments
        if text and len(text) <= MAX_BYLINE and not text.startswith(("http://", "https://", "@")):
            return (text,)
    return ()


def _tag_links(tree) -> list[str]:
    """Texts of tag links: rel="tag" (the rel-tag microformat, WordPress's default), or /tag/ links in a
    tags block; only when the page declares no tags in its metadata."""
    links = tree.xpath('//a[@rel="tag" or ((contains(@href, "/tag/") or contains(@href, "/tags/"))'
                       ' and ancestor::*[contains(@class, "tag")])]')
    return _unique([text for a in links[:MAX_TAG_LINKS] if (text := clean(a.text_content()))], split=False)


def _json_ld_article(tree) -> dict:
    """The first JSON-LD object typed as an article (in @graph or nested lists); {} if none."""
    fallback: dict = {}
    for script in tree.iter("script"):
        if "ld+json" not in (script.get("type") or "").lower():
            continue
        text = script.text or ""
        if len(text) > MAX_JSON_LD:
            continue
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):
            continue
        for obj in _objects(doc, depth=0):
            types = obj.get("@type")
            types = types if isinstance(types, list) else [types]
            if any(isinstance(t, str) and _ARTICLE_TYPES.search(t) for t in types):
                return obj
            if not fallback and "headline" in obj:
                fallback = obj
    return fallback


def _objects(doc, depth: int) -> Iterator[dict]:
    if depth > 4:
        return
    if isinstance(doc, list):
        for item in doc[:50]:
            yield from _objects(item, depth + 1)
    elif isinstance(doc, dict):
        yield doc
        graph = doc.get("@graph")
        if isinstance(graph, list):
            yield from _objects(graph, depth + 1)


def _text(value) -> str | None:
    return clean(unescape(value)) if isinstance(value, str) else None


def _names(value) -> tuple[str, ...]:
    """Person/organisation names from a JSON-LD value: a string, an object with name, or a list."""
    items = value if isinstance(value, list) else [value]
    names = []
    for item in items[:20]:
        name = item.get("name") if isinstance(item, dict) else item
        if isinstance(name, str) and (name := clean(name)) and not name.startswith(("http://", "https://")):
            names.append(name)
    return tuple(_unique(names, split=False))


def _url(value) -> str | None:
    """An image URL from a JSON-LD value: a string, an ImageObject, or a list of either."""
    for item in (value if isinstance(value, list) else [value])[:10]:
        url = item.get("url") or item.get("contentUrl") if isinstance(item, dict) else item
        if isinstance(url, str) and (url := clean(url)):
            return url
    return None


def _words(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value[:50] if isinstance(v, str)]
    return []


def _unique(values: list[str], split: bool = True) -> list[str]:
    """Trimmed, de-duplicated case-insensitively, first spelling kept; comma lists split unless not ``split``."""
    seen: dict[str, str] = {}
    for value in values:
        for part in value.split(",") if split else [value]:
            name = clean(part)
            if name:
                seen.setdefault(name.lower(), name)
    return list(seen.values())


def _without_site(title: str | None, site_name: str | None) -> str | None:
    """The title without a leading or trailing part that is the site's name ("Headline | Site")."""
    if not title or not site_name:
        return title
    parts = _TITLE_SEPARATORS.split(title)
    if len(parts) > 1:
        site = _squash(site_name)
        if _squash(parts[-1]) == site:
            return title[:title.rfind(parts[-1])].rstrip(" |–—·:»-")
        if _squash(parts[0]) == site:
            return title[len(parts[0]):].lstrip(" |–—·:»-")
    return title


def _squash(text: str) -> str:
    return re.sub(r"[\W_]+", "", text).lower()


def _title(tree, ld: dict, meta: dict[str, list[str]], site_name: str | None) -> str | None:
    """The declared headline that the page shows as an <h1>, else the first declared one, else elements.

    Declared titles often differ (an SEO headline in JSON-LD, a social one in og:title); the visible one wins.
    """
    declared = [_without_site(t, site_name) for t in (
        _text(ld.get("headline")), _text(ld.get("name")),
        *(meta.get(key, [None])[0] for key in ("og:title", "twitter:title", "dc.title", "title"))) if t]
    if len(set(declared)) > 1:
        shown = {_squash(h.text_content()) for h in tree.iter("h1")}
        for title in declared:
            if title and _squash(title) in shown:
                return title
    return declared[0] if declared else _without_site(_element_title(tree), site_name)


def _element_title(tree) -> str | None:
    """A single <h1>, else <title> without the site's name after a separator."""
    headings = [h for h in (clean(e.text_content()) for e in tree.iter("h1")) if h]
    if len(headings) == 1:
        return headings[0]
    for element in tree.iter("title"):
        title = clean(element.text_content())
        if title:
            parts = _TITLE_SEPARATORS.split(title)
            return max(parts, key=len) if len(parts) > 1 else title
    return headings[0] if headings else None


def _language(tree, meta: dict[str, list[str]]) -> str | None:
    candidates = [tree.get("lang"), tree.get("{http://www.w3.org/XML/1998/namespace}lang"),
                  *meta.get("content-language", []), *meta.get("og:locale", [])]
    for value in candidates:
        match = _LANG.match((value or "").strip())
        if match:
            return match.group().lower()
    return None


def _canonical(tree, meta: dict[str, list[str]], url: str | None) -> str | None:
    """The page's declared canonical URL: a claim, which extraction trusts or not (``urls.identifying_url``)."""
    hrefs = [e.get("href") or "" for e in tree.iter("link") if (e.get("rel") or "").lower() == "canonical"]
    for href in [*hrefs, *meta.get("og:url", [])]:
        declared = (resolve_url(url, href) if url else href.strip()) or href.strip()
        if is_web_url(declared):
            return declared
    return None


def _date(tree, url: str | None) -> str | None:
    """Publication date from markup and URL only (no guessing from body text): htmldate's fast search.

    Its extensive search reads dates out of prose ("founded in 2016" -> 2016-01-01), which would move an
    article years away from its story.
    """
    from htmldate import find_date  # imported on first use, like trafilatura (``pipelines.extract``)

    try:
        return find_date(tree, url=url, original_date=True, extensive_search=False,
                         max_date=datetime.now().strftime("%Y-%m-%d"))
    except Exception:  # htmldate's failures are not typed; no date is a valid answer
        return None
