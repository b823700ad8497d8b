"""The unbounded pipeline (``pipelines.streaming``): its pure parts, and its stages on Prism fed by TestStream.

The TestStream tests give the pipeline feed entries as polls would read them (each timestamped with its
poll) and let Prism run everything after the feeds: the already-stored check in keyed state, fetching from
a server on 127.0.0.1, extraction, the story step and each poll's commit."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import apache_beam as beam
import pyarrow.dataset as ds
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from benchmarks.localserver import NOT_FOUND, serve
from pipelines.config import Config, FetchConfig, OutputConfig
from pipelines.polls import assigned, rows_of
from pipelines.records import Article, Assignment, FeedEntry, FeedSpec, Reject, Run
from pipelines.stream import follow
from pipelines.streaming import build_stream, poll_feeds
from tests.conftest import FIXTURES, needs_prism, streaming_on_prism
from tests.test_stream import REPLAY, SEEDS, _path

START = datetime(2026, 12, 4, 10, 0, 0, tzinfo=UTC)
STREAM = Run("20261204T100000Z-abcdef", START, poll_every=5)


# --- pure parts ---

def test_each_poll_is_a_run_of_its_own_named_by_its_second():
    first = STREAM.at(Timestamp.of(START.timestamp()))
    later = STREAM.at(Timestamp.of(START.timestamp() + 5.999))  # an element of the poll at +5 s
    assert first.started_at == START and later.started_at == START + timedelta(seconds=5)
    assert first.run_id == f"20261204T100000Z-{STREAM.poll_token}" != STREAM.run_id
    assert later.run_id.startswith("20261204T100005Z-") and later.ingest_date == "2026-12-04"
    batch = Run("r", START)
    assert batch.at(Timestamp.of(0)) is batch  # a batch run's elements all belong to it


def test_polls_start_every_poll_every_seconds_one_at_a_time_until_asked_to_stop(tmp_path):
    feeds = (FeedSpec(url="http://a.example/feed"), FeedSpec(url="http://b.example/feed"))
    stream_tmp = tmp_path / "_tmp" / STREAM.run_id
    (stream_tmp / "polls").mkdir(parents=True)

    def tick(k: int, polls: int | None = None) -> bool:
        return bool(list(poll_feeds(START.timestamp() + k, feeds, STREAM, str(tmp_path), polls)))

    def commit(k: int) -> None:  # what CommitPoll leaves once a poll is committed
        (stream_tmp / "polls" / f"{STREAM.at(Timestamp.of(START.timestamp() + k)).run_id}.json").write_text("{}")

    assert list(poll_feeds(START.timestamp(), feeds, STREAM, str(tmp_path))) == [(f.url, f) for f in feeds]
    assert [k for k in range(1, 11) if tick(k)] == []  # poll 0 is under way: the ticks at 5 and 10 are skipped
    commit(0)
    assert [k for k in range(11, 16) if tick(k)] == [15]  # the next tick that starts a poll
    commit(15)
    assert [k for k in range(16, 21) if tick(k, polls=2)] == []  # two polls started: no third
    assert tick(20, polls=3)
    assert sorted(p.name for p in (stream_tmp / "started").iterdir()) == [
        STREAM.at(Timestamp.of(START.timestamp() + k)).run_id for k in (0, 15, 20)]
    commit(20)
    (stream_tmp / "stop").write_text("stop")
    assert not tick(25)


def _article(article_id: str, url: str) -> Article:
    return Article(article_id=article_id, url=url, final_url=url, canonical_url=url, feed_url="http://f.example/feed",
                   source="s", title="t", authors=(), published_at=None, fetched_at=START, language="en",
                   summary=None, text="text", word_count=1, content_hash="h")


def test_a_polls_articles_are_written_with_their_stories_and_a_row_the_schema_refuses_is_a_reject():
    a, b = _article("a", "http://x.example/a"), _article("b", "http://x.example/b")
    placed = assigned([b, a], [Assignment("a", "s1"), Assignment("b", "s1", "a", "exact")])
    assert [(x.article_id, x.story_id, x.duplicate_of) for x in placed] == [("a", "s1", None), ("b", "s1", "a")]
    assert assigned([a], []) == []  # rejected by the stories stage: not written
    rejects: list[Reject] = []
    bad = replace(placed[0], word_count=2**70)  # more than the schema's int64 holds
    rows = rows_of("articles", [bad, placed[1]], STREAM.at(Timestamp.of(START.timestamp())), rejects)
    assert [r["article_id"] for r in rows] == ["b"] and rows[0]["run_id"].endswith(STREAM.poll_token)
    assert [(r.url, r.stage, r.reason) for r in rejects] == [("http://x.example/a", "write", "internal_error")]


def test_following_a_stream_prints_each_poll_and_cancels_once_the_polls_started_are_committed(tmp_path):
    summary = {"run_id": "p1", "seconds": 1.0, "metrics_available": True, "reconciled": True,
               "feeds": {"polled": 1, "unchanged": 0, "failing": 0, "rejected": 0, "ill_formed": 0},
               "entries": {"seen": 2, "articles_written": 2, "rejected": 0, "already_stored": 0},
               "articles_written": 2, "duplicates": {"exact": 0, "near": 0},
               "stories": {"new": 1, "continued": 0, "index_restored": 0}, "state": {"snapshots_unreadable": 0},
               "rejects": {"total": 0, "by_reason": {}}}
    stop, lines, cancelled = threading.Event(), [], []
    arriving = [[summary], [], [{**summary, "run_id": "p2"}], [], []]
    drained = iter([False, True])

    def finished(_timeout: float) -> bool:
        if len(arriving) == 4:
            stop.set()  # the stop request arrives after two polls
        return bool(cancelled) and not arriving

    def new_polls() -> list[dict]:
        return arriving.pop(0) if arriving else []

    result = follow(STREAM, str(tmp_path), 5.0, finished, new_polls, stop, lambda: next(drained),
                    lambda: cancelled.append(True), say=lines.append)
    assert [line.split()[:3] for line in lines] == [["poll", "1", "p1"], ["poll", "2", "p2"]]
    assert cancelled == [True] and result["polls"] == 2 and result["stopped_by"] == "signal"
    assert result["entries"]["seen"] == 4 and result["reconciled"] is True
    saved = json.loads((tmp_path / "_runs" / f"{STREAM.run_id}.json").read_text())
    assert saved["polls"] == 2 and saved["last_poll"] == "p2"


# --- the stages on Prism, fed by TestStream ---

def _site():
    """The seed write-ups served on 127.0.0.1; the first names itself canonical on this host, so a link to it
    with a query parameter added is the same article (its id comes from the canonical URL)."""
    pages = {_path(r["url"]): (FIXTURES / r["file"]).read_bytes() for r in REPLAY if "file" in r}
    hits: dict[str, int] = {}
    first = _path(SEEDS[0])

    def answer(path: str):
        hits[path] = hits.get(path, 0) + 1
        page = path.split("?", 1)[0]
        if page == first:
            return 200, "text/html; charset=utf-8", pages[first].replace(SEEDS[0].encode(), (base + first).encode())
        return (200, "text/html; charset=utf-8", pages[page]) if page in pages else NOT_FOUND

    server, base = serve(answer)
    return server, base, hits


@needs_prism
def test_entries_out_of_order_late_repeated_and_moved_are_each_stored_once(tmp_path):
    server, base, hits = _site()
    out = tmp_path / "out"
    config = Config(source="test", feeds=(), output=OutputConfig(path=str(out)),
                    fetch=FetchConfig(allow_private_addresses=True, host_delay=0.0, retries=0, timeout=10.0))
    link = lambda k: base + _path(SEEDS[k])  # noqa: E731
    feed, other = f"{base}/feed.xml", f"{base}/other.xml"
    published = lambda hours: START - timedelta(hours=hours)  # noqa: E731
    t0, t1 = START.timestamp(), START.timestamp() + 5
    polls = (
        TestStream()
        # poll 1: out of order (the newer entry first), one entry in two feeds
        .add_elements([TimestampedValue(FeedEntry(feed, link(1), published_at=published(1)), t0),
                       TimestampedValue(FeedEntry(feed, link(0), published_at=published(5)), t0),
                       TimestampedValue(FeedEntry(other, link(1), published_at=published(1)), t0)])
        .advance_watermark_to(t0 + 1)
        # poll 2: an entry published before all of poll 1's (late), poll 1's entries again, one of them
        # under a tracking parameter, and the first write-up under a new link (its page: the same canonical URL)
        .add_elements([TimestampedValue(FeedEntry(feed, link(2), published_at=published(9)), t1),
                       TimestampedValue(FeedEntry(feed, link(1), published_at=published(1)), t1),
                       TimestampedValue(FeedEntry(feed, link(1) + "?utm_source=rss", published_at=published(1)), t1),
                       TimestampedValue(FeedEntry(feed, link(0) + "?edition=2", published_at=published(5)), t1)])
        .advance_watermark_to_infinity()
    )
    try:
        with TestPipeline(options=streaming_on_prism()) as p:
            summaries = build_stream(p, config, STREAM, entries=p | polls)
            assert_that(summaries | beam.Map(lambda s: (s["run_id"][:16], s["entries"], s["reconciled"])),
                        equal_to([
                            ("20261204T100000Z", {"seen": 3, "articles_written": 2, "rejected": 1,
                                                  "already_stored": 0}, True),
                            ("20261204T100005Z", {"seen": 4, "articles_written": 1, "rejected": 0,
                                                  "already_stored": 3}, True)]))
    finally:
        server.shutdown()
    articles = ds.dataset(out / "articles", partitioning="hive").to_table().to_pylist()
    assert sorted(a["url"] for a in articles) == sorted(link(k) for k in range(3))
    assert len({a["story_id"] for a in articles}) == 1  # three outlets' write-ups, over two polls: one story
    rejects = ds.dataset(out / "rejects", partitioning="hive").to_table().to_pylist()
    assert [(r["url"], r["reason"]) for r in rejects] == [(link(1), "duplicate_url")]
    assert hits[_path(SEEDS[1])] == 1 and hits[_path(SEEDS[0]) + "?edition=2"] == 1  # fetched, then known by its id
    files = sorted(p.relative_to(out).as_posix() for p in (out / "articles").rglob("*.parquet"))
    assert files == [f"articles/ingest_date=2026-12-04/20261204T10000{s}Z-{STREAM.poll_token}-00000-of-00001.parquet"
                     for s in (0, 5)]  # named like any run's files, one per poll
    assert not list((out / "_tmp").rglob("*.parquet"))  # nothing left half-written
    current = ds.dataset(out / "stories_current", partitioning="hive").to_table().to_pylist()
    assert [(c["article_count"], c["original_count"]) for c in current] == [(3, 3)]
