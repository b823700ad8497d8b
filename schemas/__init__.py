"""The Parquet output contract: explicit pyarrow schemas, versioned, documented field by field.

Each field's documentation is stored in the field metadata under ``doc`` and the schema version in
the schema metadata under ``newsbeam.schema_version``, so both travel inside every Parquet file.
Changing a field's type, name or meaning requires bumping ``SCHEMA_VERSION``'s major number (and a rename is
recorded in ``RENAMED``); adding a nullable field at the end is a compatible change (minor number). Files of
older versions are rewritten to the current schema before a run writes (``pipelines.datasets``), so every file
of a dataset has one schema and every reader sees every column.
"""

from __future__ import annotations

import pyarrow as pa

# 1.1: articles.description, image_url, tags; 1.2: articles.claimed_published_at; 2.0: rejects.at renamed
# rejected_at (AT is a keyword in DuckDB 2.0), articles.canonical_ignored
SCHEMA_VERSION = "2.0"

# Columns renamed since 1.0, per dataset: old name -> current name.
RENAMED = {"rejects": {"at": "rejected_at"}}

_TS = pa.timestamp("us", tz="UTC")


def _schema(name: str, fields: list[tuple[str, pa.DataType, bool, str]]) -> pa.Schema:
    return pa.schema(
        [pa.field(n, t, nullable=null, metadata={"doc": doc}) for n, t, null, doc in fields],
        metadata={"newsbeam.schema_version": SCHEMA_VERSION, "newsbeam.dataset": name},
    )


ARTICLES = _schema("articles", [
    ("article_id", pa.string(), False, "Stable id: 16 hex digits hashed from canonical_url; equal across runs."),
    ("url", pa.string(), False, "The feed entry's link, exactly as fetched."),
    ("final_url", pa.string(), False, "The URL after redirects."),
    ("canonical_url", pa.string(), False,
     "The page's declared canonical URL (else final_url), normalised: lower-case host, no default "
     "port, fragment or tracking parameters, sorted query."),
    ("feed_url", pa.string(), False, "The feed the entry came from (URL or local path)."),
    ("source", pa.string(), False, "The outlet: the page's site name, else the host without www."),
    ("title", pa.string(), True, "Headline: the page's, else the feed entry's."),
    ("authors", pa.list_(pa.string()), False, "Bylines: the page's, else the feed entry's; may be empty."),
    ("published_at", _TS, True,
     "Publication time in UTC: the feed entry's timestamp when it agrees with the page's date, else "
     "the page's date at 00:00 UTC, else the entry's timestamp; null when neither gives one. Never later than "
     "fetched_at: a later claim is capped (see claimed_published_at)."),
    ("fetched_at", _TS, False, "When the page was fetched (UTC)."),
    ("language", pa.string(), True, "ISO 639-1 code from the page's lang attribute or headers; null if unknown."),
    ("summary", pa.string(), True, "The feed entry's summary as plain text, else the page's description."),
    ("text", pa.string(), False,
     "The article body as plain text, paragraphs separated by newlines; headline, reader comments and page "
     "chrome excluded."),
    ("word_count", pa.int32(), False,
     "Words in text: space-separated, with scripts written without spaces (Chinese, Japanese, Thai, ...) "
     "segmented by ICU's dictionaries."),
    ("content_hash", pa.string(), False,
     "Hash of the normalised text (case, punctuation and whitespace folded); equal hashes are exact copies."),
    ("story_id", pa.string(), False, "The story (event) this article reports; shared by all its write-ups."),
    ("duplicate_of", pa.string(), True,
     "article_id of the earlier article this one is an exact or near-identical copy of; null if original."),
    ("run_id", pa.string(), False, "The run that wrote this row."),
    ("description", pa.string(), True, "The page's own description (meta description or og:description)."),
    ("image_url", pa.string(), True, "The page's main image (og:image or the like), an absolute URL."),
    ("tags", pa.list_(pa.string()), True, "The page's sections, tags and keywords, else its tag links; null if none."),
    ("claimed_published_at", _TS, True,
     "The publication time the page or feed declared, when it was later than fetched_at (a time-zone slip, a "
     "scheduled post) and published_at was capped to fetched_at; null otherwise."),
    ("canonical_ignored", pa.string(), True,
     "The canonical URL the page declared, when it did not identify the article, and why: not a valid URL, on "
     "another site, or another page of the site (so canonical_url is the page's own final URL); null when the "
     "declared canonical URL, or none, was used."),
])

STORIES = _schema("stories", [
    ("story_id", pa.string(), False, "Stable story id; equal across runs."),
    ("title", pa.string(), True, "The representative article's title."),
    ("representative_id", pa.string(), False, "article_id of the article that represents the story (its first)."),
    ("article_count", pa.int32(), False, "Articles in the story so far, over all runs, copies included."),
    ("sources", pa.list_(pa.string()), False, "Distinct outlets that reported the story, sorted."),
    ("first_seen", _TS, False, "Earliest article time (published, else fetched) in the story."),
    ("last_seen", _TS, False, "Latest article time (published, else fetched) in the story."),
    ("run_id", pa.string(), False,
     "The run that wrote this row; a story touched by several runs has one row per run, the latest is current."),
])

REJECTS = _schema("rejects", [
    ("url", pa.string(), False, "What failed: the feed URL for feed failures, else the entry's link."),
    ("feed_url", pa.string(), True, "The feed the entry came from; null for feed-level rejects."),
    ("stage", pa.string(), False, "Where it failed: feed, dedup, fetch, extract, stories or write."),
    ("reason", pa.string(), False, "Why, from a fixed vocabulary (see README: Reject reasons)."),
    ("detail", pa.string(), False, "Human-readable detail (status code, exception message, kept duplicate)."),
    ("run_id", pa.string(), False, "The run that wrote this row."),
    ("rejected_at", _TS, False, "When the failure happened (UTC)."),
])

DATASETS = {"articles": ARTICLES, "stories": STORIES, "rejects": REJECTS}

# Every dataset is Hive-partitioned by this column, derived from the run's start time (UTC date).
PARTITION_COLUMN = "ingest_date"
