"""The SkipKnown stage: drop what earlier runs stored, and keep one of each within-run duplicate.

Keys: before fetching, an entry's canonical link; after extraction, the article id (from the page's
canonical URL). A key found in the stored ``articles/`` dataset is counted as
``entries_already_stored`` and dropped; several elements of this run with one key keep the first in
a deterministic order and turn the rest into ``duplicate_url`` rejects (stage ``dedup``). The join is
a CoGroupByKey, so memory does not grow with the stored history.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipelines import metrics
from pipelines.records import Article, FeedEntry, Reject
from pipelines.urls import canonicalize

REJECTS = "rejects"
STORED_COLUMNS = ["article_id", "url", "final_url", "canonical_url"]


def entry_key(entry: FeedEntry) -> str:
    return canonicalize(entry.link)


def article_key(article: Article) -> str:
    return article.article_id


def stored_keys(row: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, key) pairs a stored article row answers for: its URLs and its id."""
    urls = {canonicalize(row["url"]), canonicalize(row["final_url"]), row["canonical_url"]}
    return [("url", u) for u in sorted(urls)] + [("id", row["article_id"])]


class ReadStoredKeys(beam.PTransform):
    """The keys of every stored article as (kind, key); empty on the first run."""

    def __init__(self, output: str):
        super().__init__()
        self._pattern = f"{output.rstrip('/')}/articles/*/*.parquet"

    def expand(self, pbegin):
        if not FileSystems.match([self._pattern])[0].metadata_list:
            return pbegin | "NothingStored" >> beam.Create([])
        return (
            pbegin
            | "ReadArticles" >> beam.io.ReadFromParquet(self._pattern, columns=STORED_COLUMNS)
            | "Keys" >> beam.FlatMap(stored_keys)
        )


def _select(grouped: tuple[str, dict[str, list]], order: Callable, link: Callable) -> Iterator:
    _, groups = grouped
    items = groups["item"]
    if not items:
        return
    if groups["stored"]:
        metrics.inc("entries_already_stored", len(items))
        return
    first, *rest = sorted(items, key=order)
    yield first
    now = datetime.now(UTC)
    for item in rest:
        yield beam.pvalue.TaggedOutput(REJECTS, Reject(
            link(item), item.feed_url, "dedup", "duplicate_url", f"same article as {link(first)}", now))


class SkipKnown(beam.PTransform):
    """Elements -> the new ones, one per key; a ``rejects`` output for within-run duplicates."""

    def __init__(self, stored, kind: str, key: Callable, order: Callable, link: Callable):
        super().__init__()
        self._stored, self._kind = stored, kind
        self._key, self._order, self._link = key, order, link

    def expand(self, items):
        kind = self._kind
        stored = (
            self._stored
            | "OfKind" >> beam.Filter(lambda kk: kk[0] == kind)
            | "Key" >> beam.Map(lambda kk: kk[1])
            | "Distinct" >> beam.Distinct()
            | "AsKeyed" >> beam.Map(lambda k: (k, True))
        )
        return (
            {"item": items | "KeyItems" >> beam.WithKeys(self._key), "stored": stored}
            | "Join" >> beam.CoGroupByKey()
            | "Select" >> beam.ParDo(_select, self._order, self._link).with_outputs(REJECTS, main="new")
        )


def article_order(article: Article) -> tuple:
    return (article.published_at is None, article.published_at or datetime.min.replace(tzinfo=UTC),
            article.url, article.feed_url)


def entry_order(entry: FeedEntry) -> tuple:
    return entry.sort_key()
