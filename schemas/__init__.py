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
# rejected_at (AT is a keyword in DuckDB 2.0), articles.canonical_ignored; 3.0: articles.source named by a
# precedence (the config's feed name first), articles.figures; stories.title chosen by content, and
# stories.first_article_id, original_count, outlet_count, figures, disputes; the stories_current dataset
SCHEMA_VERSION = "3.0"

# Columns renamed since 1.0, per dataset: old name -> current name.
RENAMED = {"rejects": {"at": "rejected_at"}}

_TS = pa.timestamp("us", tz="UTC")


def _struct(fields: list[tuple[str, pa.DataType, str]]) -> pa.DataType:
    return pa.struct([pa.field(n, t, metadata={"doc": doc}) for n, t, doc in fields])


FIGURE = _struct([
    ("kind", pa.string(), "money, percent, count or date."),
    ("value", pa.float64(),
     "The number in plain units: money in units of its currency (\"$14.3 billion\" is 14300000000), percent in "
     "points, a count; a range's midpoint; null for a date."),
    ("unit", pa.string(), "ISO 4217 currency code for money, \"%\" for percent, null for counts and dates; a rate "
                          "adds its period (\"USD/year\", \"/day\")."),
    ("subject", pa.string(),
     "The word for what the figure measures, lower-case: the noun after it (\"49% stake\"), else the nearest "
     "content word before it in its clause (\"investing $14.8 billion\"); null if none."),
    ("text", pa.string(), "The figure as written (\"$14.3 billion\", \"49 percent\", \"12 juin 2025\")."),
    ("precision", pa.float64(),
     "The step the number was written to, in value's units (\"$14.3 billion\": 100000000; \"300\": 100); a "
     "range's width; 1 for a date."),
    ("qualifier", pa.string(), "approx (about, nearly), over (more than, at least) or under (up to, less than); "
                               "null when stated as exact."),
    ("day", pa.date32(), "A date's day (the year taken from the article's date when not written); null otherwise."),
])

STORY_FIGURE = _struct([
    ("kind", pa.string(), "money, percent, count or date."),
    ("unit", pa.string(), "ISO 4217 currency code for money, \"%\" for percent; null otherwise."),
    ("subject", pa.string(), "The word most outlets stating this value use for what it measures (for a disputed "
                             "value, the word the outlets disagree on)."),
    ("value", pa.float64(), "The value, as the most precisely written figure of it states it; null for a date."),
    ("day", pa.date32(), "A date's day; null otherwise."),
    ("text", pa.string(), "The value as that figure writes it."),
    ("outlets", pa.list_(pa.string()), "The outlets stating this value (any figure within its rounding), sorted."),
    ("disputed", pa.bool_(),
     "Other outlets give the same quantity a value that differs beyond rounding ($14.3B and $14.8B; not $14B "
     "and $14.3B)."),
])


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
    ("source", pa.string(), False,
     "The outlet: the config's name for the feed, else the page's site name, else the feed's title, else the "
     "page's host without www."),
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
    ("figures", pa.list_(FIGURE), True,
     "The figures the headline and text state (money, percentages, counts, dates), normalised, in order of "
     "appearance, at most 60; empty when none; null in rows written before schema 3.0."),
])

def _story_fields(current: bool) -> list[tuple[str, pa.DataType, bool, str]]:
    run_doc = ("The run that last changed the story." if current else
               "The run that wrote this row; a story touched by several runs has one row per run, the latest is "
               "current (stories_current holds only that one).")
    return [
        ("story_id", pa.string(), False, "Stable story id; equal across runs."),
        ("title", pa.string(), True,
         "The representative headline: of the story's versions, the one nearest its centre (the cosine of its "
         "terms with the story's), so the version the others agree with most; chosen again as versions arrive."),
        ("representative_id", pa.string(), False, "article_id of the article whose headline is title."),
        ("article_count", pa.int32(), False, "Articles in the story so far, over all runs, copies included."),
        ("sources", pa.list_(pa.string()), False,
         "Distinct outlets that reported the story (as articles.source), sorted."),
        ("first_seen", _TS, False, "Earliest article time (published, else fetched) in the story."),
        ("last_seen", _TS, False, "Latest article time (published, else fetched) in the story."),
        ("run_id", pa.string(), False, run_doc),
        ("first_article_id", pa.string(), True,
         "article_id of the story's first article by publication time (an article without one counts after "
         "every dated one); null in rows written before schema 3.0."),
        ("original_count", pa.int32(), True,
         "Articles in the story that are not copies of another (duplicate_of null); null before schema 3.0."),
        ("outlet_count", pa.int32(), True, "Distinct outlets: the length of sources; null before schema 3.0."),
        ("figures", pa.list_(STORY_FIGURE), True,
         "What the versions state: each value stated by two or more outlets, and each disputed value, with the "
         "outlets stating it; disputed values first, at most 50; empty when none; null before schema 3.0."),
        ("disputes", pa.int32(), True,
         "Quantities the outlets disagree on (distinct kind, unit and subject among the disputed figures); "
         "null before schema 3.0."),
    ]


STORIES = _schema("stories", _story_fields(current=False))

# One row per story, as the latest run left it, partitioned by the date of the run that created the story.
STORIES_CURRENT = _schema("stories_current", _story_fields(current=True))

REJECTS = _schema("rejects", [
    ("url", pa.string(), False, "What failed: the feed URL for feed failures, else the entry's link."),
    ("feed_url", pa.string(), True, "The feed the entry came from; null for feed-level rejects."),
    ("stage", pa.string(), False, "Where it failed: feed, dedup, fetch, extract, stories or write."),
    ("reason", pa.string(), False, "Why, from a fixed vocabulary (see README: Reject reasons)."),
    ("detail", pa.string(), False, "Human-readable detail (status code, exception message, kept duplicate)."),
    ("run_id", pa.string(), False, "The run that wrote this row."),
    ("rejected_at", _TS, False, "When the failure happened (UTC)."),
])

# The datasets runs append to; ``stories_current`` is kept beside them (``pipelines.current``), and every
# dataset's files are brought to the current schema before a run (``pipelines.datasets``).
DATASETS = {"articles": ARTICLES, "stories": STORIES, "rejects": REJECTS}
ALL_DATASETS = {**DATASETS, "stories_current": STORIES_CURRENT}

# Every dataset is Hive-partitioned by this column, derived from the run's start time (UTC date).
PARTITION_COLUMN = "ingest_date"
