from datetime import UTC, datetime

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from pipelines import metrics
from pipelines.known import (
    ARTICLE_COLUMNS,
    ENTRY_COLUMNS,
    SkipKnown,
    SkipSeen,
    SkipSettled,
    StoredKeys,
    _SeenFn,
    entry_key,
    entry_lookups,
    entry_order,
    settled,
    stored_matches,
)
from pipelines.records import Reject
from pipelines.sinks import to_row
from schemas import DATASETS
from tests.conftest import make_entry, needs_prism, streaming_on_prism

T = datetime(2025, 6, 13, tzinfo=UTC)


def stored_table(*rows: tuple[str, str, str, str]) -> pa.Table:
    return pa.table({name: [r[k] for r in rows] for k, name in enumerate(("article_id", *ENTRY_COLUMNS))})


def store(output, table: pa.Table, day: str = "2026-01-01", name: str = "run-00000-of-00001.parquet") -> None:
    folder = output / "articles" / f"ingest_date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / name)


def test_entry_lookups_are_the_link_as_given_and_canonical():
    assert entry_lookups(make_entry("https://A.example/x?utm_source=rss#top")) == [
        "https://A.example/x?utm_source=rss#top", "https://a.example/x"]
    assert entry_lookups(make_entry("https://a.example/x")) == ["https://a.example/x"]


def test_stored_matches_finds_any_form_in_any_column():
    table = stored_table(
        ("id1", "https://a.example/x?utm_source=rss", "https://a.example/x", "https://a.example/x"),
        ("id2", "https://b.example/feed-link", "https://b.example/moved", "https://b.example/canonical"),
        ("id3", "https://c.example/other", "https://c.example/other", "https://c.example/other"),
    )
    lookup = {
        "https://a.example/x": ["https://a.example/x"],  # canonical form = stored canonical_url
        "https://b.example/feed-link": ["https://b.example/feed-link"],  # raw link = stored url
        "https://z.example/new": ["https://z.example/new"],  # not stored
    }
    assert stored_matches(table, ENTRY_COLUMNS, lookup) == ["https://a.example/x", "https://b.example/feed-link"]
    assert stored_matches(table, ARTICLE_COLUMNS, {"id3": ["id3"], "id9": ["id9"]}) == ["id3"]
    assert stored_matches(table, ENTRY_COLUMNS, {}) == []


def test_stored_matches_ignores_nulls_and_maps_a_value_to_every_key():
    table = pa.table({"url": pa.array([None, "https://a.example/x"], pa.string())})
    assert stored_matches(table, ["url"], {"https://a.example/x": ["k1", "k2"]}) == ["k1", "k2"]


def test_stored_keys_reads_every_partition(tmp_path):
    store(tmp_path, stored_table(("id1", "https://a.example/1", "https://a.example/1", "https://a.example/1")))
    store(tmp_path, stored_table(("id2", "https://a.example/2", "https://a.example/2", "https://a.example/2")),
          day="2026-01-02")
    with TestPipeline() as p:
        probes = p | beam.Create([("https://a.example/1", "k1"), ("https://a.example/2", "k2"),
                                  ("https://a.example/3", "k3")])
        assert_that(probes | StoredKeys(str(tmp_path), ENTRY_COLUMNS), equal_to(["k1", "k2"]))


@pytest.mark.parametrize("history", [True, False], ids=["stored", "nothing-stored"])
def test_skip_known_drops_stored_and_keeps_first_of_duplicates(tmp_path, history):
    if history:
        store(tmp_path, stored_table(("old-id", "https://a.example/old?utm_source=rss", "https://a.example/old",
                                      "https://a.example/old")))
    stored = make_entry("https://a.example/old")
    first = make_entry("https://a.example/dup?utm_source=x", published_at=T)
    second = make_entry("https://a.example/dup#comments", published_at=T.replace(hour=5),
                        feed_url="https://other.example/feed")
    fresh = make_entry("https://a.example/new")
    with TestPipeline() as p:
        out = (p | "Entries" >> beam.Create([stored, first, second, fresh])
               | SkipKnown(str(tmp_path), ENTRY_COLUMNS, key=entry_key, lookups=entry_lookups, order=entry_order,
                           link=lambda e: e.link))
        new = [first.link, fresh.link] + ([] if history else [stored.link])
        assert_that(out["new"] | beam.Map(lambda e: e.link), equal_to(new), label="new")
        assert_that(out["rejects"] | beam.Map(lambda r: (r.url, r.feed_url, r.stage, r.reason, r.detail)),
                    equal_to([(second.link, second.feed_url, "dedup", "duplicate_url",
                               f"same article as {first.link}")]), label="rejects")


def store_rejects(output, *rejects: Reject) -> None:
    folder = output / "rejects" / "ingest_date=2026-01-01"
    folder.mkdir(parents=True, exist_ok=True)
    run = type("R", (), {"run_id": "run"})()
    rows = [to_row(r, run) for r in rejects]
    pq.write_table(pa.Table.from_pylist(rows, schema=DATASETS["rejects"]), folder / "run-00000-of-00001.parquet")


def entry_reject(url: str, reason: str, detail: str = "", feed_url: str | None = "https://f.example/rss") -> Reject:
    return Reject(url, feed_url, "fetch", reason, detail, T)


def test_settled_keeps_entry_rejects_that_would_recur():
    rows = [entry_reject("https://a.example/gone", "http_4xx", "HTTP 404"),
            entry_reject("https://a.example/busy", "http_4xx", "HTTP 429"),
            entry_reject("https://a.example/slow", "timeout"),
            entry_reject("https://a.example/down", "http_5xx", "HTTP 503"),
            entry_reject("https://a.example/empty", "empty_extraction", "3 words"),
            entry_reject("https://a.example/bug", "internal_error", "KeyError: 'x'"),
            entry_reject("https://f.example/rss", "bad_feed", feed_url=None)]
    table = pa.Table.from_pylist([{k: getattr(r, k) for k in ("url", "feed_url", "reason", "detail")} for r in rows])
    assert settled(table).column("url").to_pylist() == ["https://a.example/gone", "https://a.example/empty"]


def test_an_entry_rejected_for_good_is_not_fetched_again_and_a_transient_one_is(tmp_path):
    store_rejects(tmp_path, entry_reject("https://a.example/gone", "http_4xx", "HTTP 404"),
                  entry_reject("https://a.example/slow", "timeout"))
    entries = [make_entry("https://a.example/gone"), make_entry("https://a.example/slow"),
               make_entry("https://a.example/new")]
    with TestPipeline() as p:
        out = (p | beam.Create(entries)
               | SkipKnown(str(tmp_path), ENTRY_COLUMNS, key=entry_key, lookups=entry_lookups, order=entry_order,
                           link=lambda e: e.link, settled=True))
        assert_that(out["new"] | beam.Map(lambda e: e.link),
                    equal_to(["https://a.example/slow", "https://a.example/new"]))
    counters = p.result.metrics().query()["counters"]
    assert sum(c.committed for c in counters if c.key.metric.name == "entries_already_stored") == 1


def test_skip_settled_drops_entry_rejects_written_before_and_keeps_feed_rejects(tmp_path):
    no_link = Reject("tag:x.example,2026:1", "https://f.example/rss", "feed", "no_link", "entry has no link", T)
    store_rejects(tmp_path, no_link)
    fresh = Reject("tag:x.example,2026:2", "https://f.example/rss", "feed", "no_link", "entry has no link", T)
    feed = Reject("https://f.example/rss", None, "feed", "bad_feed", "not a feed", T)
    with TestPipeline() as p:
        out = p | beam.Create([no_link, fresh, feed]) | SkipSettled(str(tmp_path))
        assert_that(out | beam.Map(lambda r: r.url), equal_to([fresh.url, feed.url]))


def _at_poll(element, timestamp=beam.DoFn.TimestampParam):
    return element, int(timestamp.micros // 1_000_000)


@needs_prism
def test_a_stream_skips_what_was_stored_before_it_and_what_its_polls_passed_on(tmp_path):
    """SkipSeen on Prism: a key stored before the stream started is never passed on; a key one poll passed on is
    already stored for the next polls, also once ``keep_days`` have passed since a poll last saw it (its keyed
    state expired); within a poll, the first in order is kept and the rest are duplicate rejects."""
    store(tmp_path, stored_table(("old-id", "https://a.example/old", "https://a.example/old", "https://a.example/old")))
    stored = make_entry("https://a.example/old?utm_source=rss")
    first = make_entry("https://a.example/dup", published_at=T)
    second = make_entry("https://a.example/dup#comments", published_at=T.replace(hour=5),
                        feed_url="https://other.example/feed")
    fresh = make_entry("https://a.example/new")
    t0 = 1_764_842_400
    polls = (TestStream()
             .add_elements([TimestampedValue(e, t0) for e in (stored, second, first, fresh)])
             .advance_watermark_to(t0 + 1)
             .add_elements([TimestampedValue(e, t0 + 5) for e in (first, fresh)])
             .advance_watermark_to(t0 + 6)
             .advance_watermark_to(t0 + 60)  # 30 s after the last poll that saw them: out of keyed state
             .add_elements([TimestampedValue(e, t0 + 60) for e in (first, stored)])
             .advance_watermark_to_infinity())
    with TestPipeline(options=streaming_on_prism()) as p:
        out = (p | polls | SkipSeen(str(tmp_path), ENTRY_COLUMNS, key=entry_key, lookups=entry_lookups,
                                    order=entry_order, link=lambda e: e.link, keep_days=30 / 86400, settled=True))
        assert_that(out["new"] | beam.Map(lambda e: e.link) | "NewPolls" >> beam.Map(_at_poll),
                    equal_to([(first.link, t0), (fresh.link, t0)]), label="new")
        assert_that(out["rejects"] | beam.Map(lambda r: (r.url, r.reason)) | "RejectPolls" >> beam.Map(_at_poll),
                    equal_to([((second.link, "duplicate_url"), t0)]), label="rejects")
        assert_that(out[metrics.COUNTS] | "CountPolls" >> beam.Map(_at_poll),
                    equal_to([(("entries_already_stored", 1), t) for t in (t0, t0 + 5, t0 + 5, t0 + 60, t0 + 60)]),
                    label="already stored")


class _State:
    def __init__(self):
        self.value = None

    def read(self):
        return self.value

    def write(self, value):
        self.value = value

    def clear(self):
        self.value = None


class _Timer:
    def __init__(self):
        self.at = None

    def set(self, at):
        self.at = at


def test_a_key_seen_by_a_stream_leaves_keyed_state_after_the_window_and_stays_known(tmp_path):
    """_SeenFn without a runner: a key's state holds the lookup strings of what was passed on, its timer is set
    ``keep`` after the last poll that saw it, and on expiry the state is cleared and the strings join the values
    stored before the stream."""
    seen_fn = _SeenFn(str(tmp_path), ENTRY_COLUMNS, True, entry_lookups, entry_order, lambda e: e.link,
                      Duration(seconds=30))
    entry = make_entry("https://a.example/x?utm_source=rss")
    seen, timer = _State(), _Timer()
    out = list(seen_fn.process((entry_key(entry), [entry]), Timestamp(100), seen, timer))
    assert out == [entry] and seen.value == ["https://a.example/x", entry.link] and timer.at == Timestamp(130)
    out = list(seen_fn.process((entry_key(entry), [entry]), Timestamp(110), seen, timer))
    assert [o.value for o in out] == [("entries_already_stored", 1)] and timer.at == Timestamp(140)
    seen_fn.expire(seen)
    assert seen.value is None
    out = list(seen_fn.process((entry_key(entry), [make_entry("https://a.example/x")]), Timestamp(200), seen, timer))
    assert [o.value for o in out] == [("entries_already_stored", 1)]  # known without keyed state
