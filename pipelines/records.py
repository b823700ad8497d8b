"""The element types that flow between stages.

Every type is a frozen dataclass: hashable, picklable and comparable, so Beam can move it between
workers and tests can compare it with ``equal_to``. Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pipelines.figures import Figure
from pipelines.text import scrub

# The fixed vocabulary of reject reasons. A reason names what went wrong, the stage names where.
REJECT_REASONS = frozenset(
    {
        "bad_url",  # not an http(s) URL or local path, or unparseable
        "private_address",  # host resolves to loopback/private/link-local/reserved space
        "timeout",
        "connection_error",
        "too_many_redirects",
        "http_4xx",
        "http_5xx",
        "too_large",  # body larger than fetch.max_bytes (after decompression)
        "robots",  # the site's robots.txt disallows the page for our user agent
        "not_found",  # a local file or replayed URL that does not exist
        "not_html",  # a page whose content type is not HTML
        "bad_encoding",  # a Content-Encoding we did not ask for, or a corrupt compressed body
        "bad_feed",  # not a feed, or an ill-formed feed with no usable entries
        "empty_feed",  # a well-formed feed with no entries
        "no_link",  # a feed entry without a link
        "empty_extraction",  # no article text found on the page
        "extraction_error",  # the extractor failed on the page
        "duplicate_url",  # another entry of this run resolves to the same article
        "internal_error",  # processing the element raised an unexpected exception (see pipelines.failures)
    }
)

STAGES = ("feed", "dedup", "fetch", "extract", "stories", "write")

# Reasons that may pass on another try (with HTTP 429, an ``http_4xx`` whose detail starts "HTTP 429"): the
# server or the network may do better later, and an internal error is a bug that may be fixed by then (or a
# failed write after which the entry must not stay hidden). Every other reason would recur.
RETRYABLE = ("timeout", "connection_error", "http_5xx", "internal_error")


def retryable(reason: str, detail: str) -> bool:
    return reason in RETRYABLE or detail.startswith("HTTP 429")


def _scrub_strings(record: object) -> None:
    """Replace lone surrogates in a frozen record's text fields (see ``pipelines.text.scrub``)."""
    for f in dataclasses.fields(record):  # type: ignore[arg-type]
        value = getattr(record, f.name)
        if isinstance(value, str):
            clean_value: object = scrub(value)
        elif isinstance(value, tuple) and value and all(isinstance(v, str) for v in value):
            clean_value = tuple(scrub(v) for v in value)
        else:
            continue
        if clean_value != value:
            object.__setattr__(record, f.name, clean_value)


@dataclass(frozen=True)
class FeedSpec:
    """One feed from the config. ``url`` names it in every row and in the state: an http(s) URL, or a local
    file's path as the config gives it (relative to the config's directory, so it is the same in every
    checkout); ``location`` is where it is read from (the URL, or the file's absolute path)."""

    url: str
    name: str | None = None
    location: str | None = None  # None: read from ``url``

    @property
    def source(self) -> str:
        return self.location or self.url


@dataclass(frozen=True)
class FeedState:
    """What a feed's last read left for the next run: the HTTP validators and the body's hash of its last
    successful read, whether it is failing (the reject reason, and since when), and the links of its entries
    that failed for a reason that may pass (``retryable``), which the next run tries again whatever the
    validators say."""

    feed_url: str
    content_hash: str | None = None  # None: never read successfully
    etag: str | None = None
    last_modified: str | None = None
    failing: str | None = None
    failing_since: str | None = None  # ISO time of the first failure of this reason in a row
    retry: tuple[str, ...] = ()


@dataclass(frozen=True)
class FeedEntry:
    """One item of a feed, as the feed describes it."""

    feed_url: str
    link: str
    guid: str | None = None
    title: str | None = None
    published_at: datetime | None = None
    summary: str | None = None
    author: str | None = None
    feed_name: str | None = None  # the config's name for the feed
    feed_title: str | None = None  # the feed's own title

    def __post_init__(self) -> None:
        _scrub_strings(self)  # feeds are where untrusted text enters

    def sort_key(self) -> tuple:
        """Deterministic order among entries: earliest published first, then by link."""
        return (self.published_at is None, self.published_at or datetime.min, self.link, self.feed_url)


@dataclass(frozen=True)
class Page:
    """The fetched bytes of an entry's link."""

    entry: FeedEntry
    final_url: str
    status: int
    content_type: str | None
    body: bytes
    fetched_at: datetime


@dataclass(frozen=True)
class Article:
    """One extracted article; story fields are filled by the stories stage."""

    article_id: str
    url: str
    final_url: str
    canonical_url: str
    feed_url: str
    source: str
    title: str | None
    authors: tuple[str, ...]
    published_at: datetime | None
    fetched_at: datetime
    language: str | None
    summary: str | None
    text: str
    word_count: int
    content_hash: str
    story_id: str | None = None
    duplicate_of: str | None = None
    description: str | None = None
    image_url: str | None = None
    tags: tuple[str, ...] | None = None
    claimed_published_at: datetime | None = None  # the publication time declared, when later than fetched_at
    canonical_ignored: str | None = None  # the canonical URL the page declared, when not used, and why
    figures: tuple[Figure, ...] = ()  # the figures the text states (``pipelines.figures``)

    def __post_init__(self) -> None:
        _scrub_strings(self)  # pages are where untrusted text enters

    def with_story(self, story_id: str, duplicate_of: str | None) -> Article:
        return dataclasses.replace(self, story_id=story_id, duplicate_of=duplicate_of)


@dataclass(frozen=True)
class ArticleRef:
    """An article waiting on disk for its story (``pipelines.staging``): what the steps that see the whole
    run need of it (id, order, link), and where it and its story features wait."""

    article_id: str
    url: str
    feed_url: str
    published_at: datetime | None
    file: str
    offset: int  # where in ``file`` the article starts
    features_offset: int  # where its story features start


@dataclass(frozen=True)
class Assignment:
    """The stories stage's verdict on one article."""

    article_id: str
    story_id: str
    duplicate_of: str | None = None
    duplicate_kind: str | None = None  # "exact" or "near" when duplicate_of is set


@dataclass(frozen=True)
class StoryFigure:
    """One value a story's versions give for one quantity, and the outlets that give it
    (``pipelines.stories.agreement``)."""

    kind: str
    unit: str | None
    subject: str | None
    value: float | None
    day: date | None
    text: str
    outlets: tuple[str, ...]
    disputed: bool  # other outlets give this quantity a value that differs beyond rounding


@dataclass(frozen=True)
class Story:
    """A story's cumulative state after this run, as written to ``stories/``."""

    story_id: str
    title: str | None
    representative_id: str
    article_count: int
    sources: tuple[str, ...]
    first_seen: datetime
    last_seen: datetime
    first_article_id: str | None = None
    original_count: int | None = None
    outlet_count: int | None = None
    figures: tuple[StoryFigure, ...] = ()
    disputes: int = 0


@dataclass(frozen=True)
class Reject:
    """A feed, entry or page that did not become an article, and why."""

    url: str
    feed_url: str | None
    stage: str
    reason: str
    detail: str
    rejected_at: datetime

    def __post_init__(self) -> None:
        _scrub_strings(self)  # urls and details carry input and exception messages
        if self.reason not in REJECT_REASONS:
            raise ValueError(f"unknown reject reason {self.reason!r}")
        if self.stage not in STAGES:
            raise ValueError(f"unknown reject stage {self.stage!r}")


@dataclass(frozen=True)
class Run:
    """Identity of one batch run, or of a stream; every row carries the ``run_id`` of the run it belongs to.

    A stream (``poll_every`` set) is made of polls, each a run of its own: ``at`` gives the run of an element
    from its event time, which in a stream is the time of the poll that read it."""

    run_id: str
    started_at: datetime
    poll_every: int | None = None  # seconds between a stream's polls; None for a batch run

    @property
    def ingest_date(self) -> str:
        return self.started_at.date().isoformat()

    def at(self, timestamp: Any) -> Run:
        """The run an element of this timestamp (a Beam ``Timestamp``) belongs to: a batch run's elements all
        belong to it; a stream's to the poll of that second, ``<poll time>-<stream's poll token>``."""
        if self.poll_every is None:
            return self
        when = datetime.fromtimestamp(timestamp.micros // 1_000_000, UTC)
        return Run(f"{when:%Y%m%dT%H%M%SZ}-{self.poll_token}", when)

    @property
    def poll_token(self) -> str:
        """What ends the run ids of a stream's polls: not the stream's own, so no poll is named like it."""
        return hashlib.sha256(self.run_id.encode()).hexdigest()[:6]
