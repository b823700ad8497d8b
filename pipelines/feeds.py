"""The ReadFeeds stage: FeedSpec -> FeedEntry.

Each feed is fetched once (through ``fetch.Fetcher``) and parsed with feedparser, which reads RSS
0.9x/1.0/2.0 and Atom 0.3/1.0; JSON Feed 1.0/1.1 is parsed here. A feed that cannot be fetched, or
parses to nothing usable, becomes one ``Reject`` (stage ``feed``, ``feed_url`` null); a feed that is
ill-formed but still yields entries is used and counted in ``feeds_bozo``; a feed with no entries is an
``empty_feed`` reject, so a configured feed that yields nothing is visible. An entry without a usable
link becomes an entry-level Reject. Entries keep feed order; nothing here deduplicates.

Across runs, each feed's state is kept (``FeedState``): its validators (ETag, Last-Modified) and body hash,
so a feed is fetched conditionally, and a 304 or an unchanged body (servers that ignore validators) costs
that one request and nothing more; whether it is failing, so a feed that fails run after run for the same
reason is one ``Reject`` row (from its first failure), not one per run; and the links of its entries that
failed for a reason that may pass, so the next run reads the feed in full and tries them again even when it
is unchanged. The state is saved only after every dataset of the run is written (see pipeline.py).
"""

from __future__ import annotations

import calendar
import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import feedparser
from apache_beam import coders
from apache_beam.transforms import userstate

from pipelines import metrics, state
from pipelines.failures import Guarded, describe, rejects_for
from pipelines.fetch import Fetcher, FetcherDoFn, FetchError
from pipelines.records import FeedEntry, FeedSpec, FeedState, Reject, retryable
from pipelines.text import clean, html_to_text
from pipelines.urls import is_web_url, resolve_url

REJECTS = "rejects"
STATES = "states"


class BadFeed(Exception):
    def __init__(self, detail: str, reason: str = "bad_feed"):
        super().__init__(detail)
        self.reason = reason


_CHARREF = re.compile(rb"&#([xX][0-9a-fA-F]+|[0-9]+);")


def _safe_charref(match: re.Match) -> bytes:
    """A character reference to a code point no text can hold (NUL, a UTF-16 surrogate, beyond U+10FFFF)
    becomes U+FFFD: feedparser raises on them, so one in one title would cost the whole feed."""
    digits = match.group(1)
    code = int(digits[1:], 16) if digits[:1] in (b"x", b"X") else int(digits)
    return b"&#xFFFD;" if code == 0 or 0xD800 <= code <= 0xDFFF or code > 0x10FFFF else match.group(0)


def parse_feed(body: bytes, feed_url: str, now: datetime,
               feed_name: str | None = None) -> tuple[list[FeedEntry], list[Reject], bool]:
    """Parse feed bytes into entries and entry-level rejects; also says whether the feed was ill-formed.
    Entries carry the feed's title and ``feed_name``, the config's name for it (they name the outlet).

    Raises BadFeed when the bytes are not a feed with entries (reason ``bad_feed`` or ``empty_feed``),
    including when the parser itself fails on them.
    """
    if body.lstrip()[:1] == b"{":
        entries, rejects = parse_json_feed(body, feed_url, now, feed_name)
        return entries, rejects, False
    try:
        parsed = feedparser.parse(_CHARREF.sub(_safe_charref, body), sanitize_html=False,
                                  resolve_relative_uris=False)
    except Exception as e:  # feedparser's failures on hostile bytes are not typed; they make a bad feed
        raise BadFeed(f"the feed parser failed: {type(e).__name__}: {e}") from None
    bozo = bool(parsed.get("bozo"))
    if not parsed.entries:
        if bozo:
            raise BadFeed(f"not a well-formed feed: {parsed.get('bozo_exception')}")
        if not parsed.get("version"):
            raise BadFeed("no RSS or Atom feed found in the document")
        raise BadFeed(f"a {parsed.version} feed with no entries", reason="empty_feed")
    entries, rejects = [], []
    feed_title = html_to_text(parsed.feed.get("title")) if isinstance(parsed.get("feed"), dict) else None
    for item in parsed.entries:
        link = _entry_link(item, feed_url)
        if link is None:
            what = item.get("id") or item.get("title") or "(entry without id or title)"
            rejects.append(Reject(str(what), feed_url, "feed", "no_link", "entry has no link", now))
            continue
        if not is_web_url(link):
            rejects.append(Reject(link, feed_url, "feed", "bad_url", "entry link is not an http(s) URL", now))
            continue
        entries.append(FeedEntry(
            feed_url=feed_url,
            link=link,
            guid=clean(item.get("id")),
            title=html_to_text(item.get("title")),
            published_at=_entry_time(item),
            summary=html_to_text(item.get("summary")),
            author=clean(item.get("author")),
            feed_name=feed_name,
            feed_title=feed_title,
        ))
    return entries, rejects, bozo


def parse_json_feed(body: bytes, feed_url: str, now: datetime,
                    feed_name: str | None = None) -> tuple[list[FeedEntry], list[Reject]]:
    """JSON Feed 1.0 / 1.1 (jsonfeed.org), which feedparser does not read: entries and entry-level rejects.

    An item's ``url`` is its permalink; ``external_url`` names something else, so it is not a fallback.
    """
    try:
        doc = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadFeed(f"not a JSON feed: {e}") from None
    if not isinstance(doc, dict) or not str(doc.get("version", "")).startswith("https://jsonfeed.org/version/"):
        raise BadFeed("JSON document without a jsonfeed.org version")
    items = doc.get("items")
    if not isinstance(items, list) or not items:
        raise BadFeed(f"a JSON feed ({doc['version']}) with no items", reason="empty_feed")
    entries, rejects = [], []
    feed_title = clean(doc["title"]) if isinstance(doc.get("title"), str) else None
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("url"), str) or not item["url"].strip():
            what = str(item.get("id") or item.get("title") or "(item without id or title)") \
                if isinstance(item, dict) else "(not an object)"
            rejects.append(Reject(what, feed_url, "feed", "no_link", "JSON feed item has no url", now))
            continue
        link = item["url"].strip()
        link = (resolve_url(feed_url, link) or link) if is_web_url(feed_url) else link
        if not is_web_url(link):
            rejects.append(Reject(link, feed_url, "feed", "bad_url", "item url is not an http(s) URL", now))
            continue
        authors = item.get("authors") or ([item["author"]] if isinstance(item.get("author"), dict) else [])
        names = [str(a["name"]) for a in authors if isinstance(a, dict) and a.get("name")]
        entries.append(FeedEntry(
            feed_url=feed_url, link=link, guid=clean(str(item.get("id") or "")),
            title=html_to_text(item.get("title")),
            published_at=_json_time(item.get("date_published") or item.get("date_modified")),
            summary=html_to_text(item.get("summary") or item.get("content_text") or item.get("content_html")),
            author=", ".join(names) or None, feed_name=feed_name, feed_title=feed_title,
        ))
    return entries, rejects


def _json_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _entry_link(item: dict, feed_url: str) -> str | None:
    link = item.get("link")
    if not link:
        for candidate in item.get("links", []):
            if candidate.get("href") and candidate.get("rel", "alternate") == "alternate":
                link = candidate["href"]
                break
    if not link:
        guid = item.get("id") or ""
        if item.get("guidislink") or is_web_url(guid):
            link = guid
    if not link:
        return None
    link = link.strip()
    return (resolve_url(feed_url, link) or link) if is_web_url(feed_url) else link


def _entry_time(item: dict) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = item.get(key)
        if value:
            try:
                return datetime.fromtimestamp(calendar.timegm(value), UTC)
            except (OverflowError, ValueError, OSError):
                continue
    return None


def load_feed_states(state_dir: str) -> tuple[dict[str, FeedState], list[str]]:
    """The feed states in force, and the snapshots passed over because they could not be read."""
    states, unreadable = state.load(state_dir, _parse_feed_states)
    return states or {}, unreadable


def _parse_feed_states(lines: Iterator[Any]) -> dict[str, FeedState]:
    return {d["feed_url"]: FeedState(**{**d, "retry": tuple(d.get("retry", ()))}) for d in next(lines)}


def write_feed_states(states: list[FeedState], state_dir: str, run_id: str,
                      retry: Iterable[tuple[str, str]] = ()) -> str | None:
    """Writes a run's feed states as a snapshot to commit, each with the links of ``retry`` ((feed, link) of
    the entries this run rejected for a reason that may pass) added to those it carries; returns its file
    name, or None when the snapshot in force holds the same (nothing to commit)."""
    links: dict[str, set[str]] = {}
    for feed_url, link in retry:
        links.setdefault(feed_url, set()).add(link)
    states = [dataclasses.replace(s, retry=tuple(sorted({*s.retry, *links.get(s.feed_url, ())})))
              for s in sorted(states, key=lambda s: s.feed_url)]
    return state.write(state_dir, run_id, state.encode([dataclasses.asdict(s) for s in states]))


def forget_feed_states(state_dir: str, run_id: str) -> None:
    """Commit a snapshot without feed states: the next run reads every feed in full (and not only its new
    entries). Named apart from the run's own snapshot, which it precedes."""
    state.commit(state_dir, write_feed_states([], state_dir, f"{run_id}-forgotten"))


def is_retried(reject: Reject) -> bool:
    """An entry-level reject whose entry the next run tries again."""
    return reject.feed_url is not None and retryable(reject.reason, reject.detail)


def read_feed(fetcher: Fetcher, feed: FeedSpec, previous: FeedState | None, now: datetime) -> Iterator:
    """One read of a feed after ``previous``, its state as the last read left it: its entries, and on the
    ``rejects`` and ``states`` outputs its rejects and its new state."""
    metrics.inc("feeds_polled")
    retry = set(previous.retry) if previous else set()
    try:  # with entries to try again, the feed is read in full whatever its validators say
        resp = fetcher.get(feed.source, validators=None if retry else previous)
        current = FeedState(feed.url, hashlib.sha256(resp.body).hexdigest(), resp.headers.get("etag"),
                            resp.headers.get("last-modified"))
        unchanged = previous is not None and (resp.status == 304 or current.content_hash == previous.content_hash)
        if previous is not None and unchanged and not retry:  # one request, no further work
            metrics.inc("feeds_unchanged")
            yield beam.pvalue.TaggedOutput(STATES, dataclasses.replace(
                previous, failing=None, failing_since=None) if resp.status == 304 else current)
            return
        entries, rejects, bozo = parse_feed(resp.body, feed.url, now, feed.name)
    except (FetchError, BadFeed) as e:
        yield from _failed(feed, previous, e, now)
        return
    if unchanged:  # read again for the entries to try again only
        metrics.inc("feeds_unchanged")
        entries, rejects = [e for e in entries if e.link in retry], []
    for reject in rejects:
        yield beam.pvalue.TaggedOutput(REJECTS, reject)
    yield from entries
    yield beam.pvalue.TaggedOutput(STATES, current)
    if bozo:
        metrics.inc("feeds_bozo")
    metrics.inc("entries_seen", len(entries) + len(rejects))  # counted last: nothing after it can fail


class _ReadFeedFn(FetcherDoFn):
    def __init__(self, fetcher: Fetcher, state_dir: str):
        super().__init__(fetcher)
        self._state_dir = state_dir
        self._previous: dict[str, FeedState] = {}
        self._unreadable: list[str] = []

    def setup(self) -> None:
        super().setup()
        self._previous, self._unreadable = load_feed_states(self._state_dir)

    def process(self, feed: FeedSpec) -> Iterator:
        if self._unreadable:  # counted once per worker that read the state
            metrics.inc("state_snapshots_unreadable", len(self._unreadable))
            self._unreadable = []
        yield from read_feed(self._fetcher, feed, self._previous.get(feed.url), datetime.now(UTC))


class _ReadFeedKeyedFn(_ReadFeedFn):
    """A stream's feed reads: each feed's state is keyed Beam state, seeded from the committed snapshot."""

    STATE = userstate.ReadModifyWriteStateSpec("feed_state", coders.PickleCoder())

    def process(self, keyed: tuple[str, FeedSpec],  # type: ignore[override]
                saved=beam.DoFn.StateParam(STATE)) -> Iterator:
        _, feed = keyed
        previous = saved.read() or self._previous.get(feed.url)
        now = datetime.now(UTC)
        try:
            outputs = list(read_feed(self._fetcher, feed, previous, now))
        except Exception as e:  # the mechanism itself: a failure is a reject row, the feed is read next poll
            yield from (beam.pvalue.TaggedOutput(REJECTS, r) for r in rejects_for(feed, "feed", describe(e)))
            return
        entries = rejects = 0
        failing = False
        for out in outputs:
            tag = out.tag if isinstance(out, beam.pvalue.TaggedOutput) else None
            if tag == STATES:
                saved.write(out.value)
                failing = out.value.failing is not None
            entries += tag is None
            rejects += tag == REJECTS and out.value.feed_url is not None
            yield out
        yield metrics.counted("feeds_polled", counter=False)
        if failing:
            yield metrics.counted("feeds_failing", counter=False)
        elif not entries and not rejects:
            yield metrics.counted("feeds_unchanged", counter=False)
        yield metrics.counted("entries_seen", entries + rejects, counter=False)


def _failed(feed: FeedSpec, previous: FeedState | None, error: FetchError | BadFeed, now: datetime) -> Iterator:
    """A feed that cannot be read: its state keeps the last good read's validators (the next run compares with
    it) and the entries still to try again, and records the failure; a ``Reject`` row when the failure is new
    (the feed was read, or failed for another reason, last time)."""
    again = previous is not None and previous.failing == error.reason
    failing = dataclasses.replace(previous or FeedState(feed.url), failing=error.reason,
                                  failing_since=previous.failing_since if again and previous else now.isoformat())
    yield beam.pvalue.TaggedOutput(STATES, failing)
    metrics.inc("feeds_failing")
    if not again:
        detail = error.detail if isinstance(error, FetchError) else str(error)
        yield beam.pvalue.TaggedOutput(REJECTS, Reject(feed.url, None, "feed", error.reason, detail, now))


class ReadFeedsKeyed(beam.PTransform):
    """A stream's ReadFeeds: (feed url, FeedSpec) at each poll -> the same outputs and ``counts``. A feed's
    validators, failure and entries to try again are keyed state, seeded from the snapshot committed under
    ``state_dir`` when the stream starts, so a poll reads no state file; its new state is emitted on
    ``states`` for the poll's commit."""

    def __init__(self, fetcher: Fetcher, state_dir: str):
        super().__init__()
        self._fetcher, self._state_dir = fetcher, state_dir

    def expand(self, feeds):
        return feeds | "ReadFeed" >> beam.ParDo(_ReadFeedKeyedFn(self._fetcher, self._state_dir)).with_outputs(
            REJECTS, STATES, metrics.COUNTS, main="entries")


class ReadFeeds(beam.PTransform):
    """FeedSpec -> ``entries`` (FeedEntry), ``rejects`` (Reject, stage ``feed``) and ``states`` (FeedState).

    Feeds unchanged since the run that saved ``state_dir`` (HTTP 304, or the same body) yield no entries.
    """

    def __init__(self, fetcher: Fetcher, state_dir: str):
        super().__init__()
        self._fetcher, self._state_dir = fetcher, state_dir

    def expand(self, feeds):
        return (
            feeds
            | "Reshuffle" >> beam.Reshuffle()  # spread feeds over workers before the slow fetches
            | "ReadFeed" >> Guarded(beam.ParDo(_ReadFeedFn(self._fetcher, self._state_dir)), "feed",
                                   REJECTS, STATES, main="entries")
        )
