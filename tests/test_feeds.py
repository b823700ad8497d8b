from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from pipelines import metrics, state
from pipelines.config import FetchConfig
from pipelines.feeds import BadFeed, ReadFeeds, ReadFeedsKeyed, load_feed_states, parse_feed, write_feed_states
from pipelines.fetch import Fetcher
from pipelines.records import FeedSpec
from tests.conftest import FIXTURES, fixture_url, needs_prism, streaming_on_prism

NOW = datetime(2025, 6, 14, tzinfo=UTC)


@pytest.mark.parametrize("name, count", [("ledger.xml", 3), ("techwire.xml", 2), ("bytebeat.xml", 4),
                                         ("markets.xml", 3), ("econ.xml", 3)])
def test_fixture_feeds_parse_in_every_format(name, count):
    entries, rejects, bozo = parse_feed((FIXTURES / "feeds" / name).read_bytes(), "feed.xml", NOW)
    assert len(entries) == count and not rejects and not bozo
    for e in entries:
        assert e.link.startswith("https://") and e.title and e.author and e.summary
        assert e.published_at is not None and e.published_at.tzinfo is UTC
        assert "<" not in e.summary


def test_entry_fields_from_rss2():
    entries, _, _ = parse_feed((FIXTURES / "feeds" / "ledger.xml").read_bytes(), "feed.xml", NOW)
    seed = next(e for e in entries if e.link == fixture_url("ledger", "/tech/2025/06/13/meta-scale-ai-investment"))
    assert seed.guid == "dailyledger.example:version-0.txt"
    assert seed.published_at == datetime(2025, 6, 13, 9, 12, tzinfo=UTC)
    assert seed.author == "Priya Raman"
    assert seed.title == "Meta bets $14.3 billion on Scale AI and hires its chief executive"


def test_broken_feed_is_bad_feed():
    with pytest.raises(BadFeed):
        parse_feed((FIXTURES / "feeds" / "broken.xml").read_bytes(), "broken.xml", NOW)
    with pytest.raises(BadFeed):
        parse_feed(b"\x00\x01 not xml at all", "x", NOW)


def test_entries_without_usable_link_are_rejected_and_relative_links_resolved():
    body = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
    <item><title>no link here</title></item>
    <item><title>relative</title><link>/news/1</link></item>
    <item><title>mail</title><link>mailto:a@b.example</link></item>
    </channel></rss>"""
    entries, rejects, _ = parse_feed(body, "https://site.example/feed/rss", NOW)
    assert [e.link for e in entries] == ["https://site.example/news/1"]
    assert sorted((r.stage, r.reason) for r in rejects) == [("feed", "bad_url"), ("feed", "no_link")]
    assert all(r.feed_url == "https://site.example/feed/rss" for r in rejects)


def test_ill_formed_feed_with_entries_is_used():
    body = b"""<rss version="2.0"><channel><title>t &amp broken</title>
    <item><title>ok</title><link>https://a.example/1</link></item></channel></rss>"""
    entries, _, bozo = parse_feed(body, "x", NOW)
    assert bozo and [e.link for e in entries] == ["https://a.example/1"]


def test_read_feeds_composite(tmp_path):
    good = FeedSpec(str(FIXTURES / "feeds" / "techwire.xml"))
    broken = FeedSpec(str(FIXTURES / "feeds" / "broken.xml"))
    missing = FeedSpec(str(tmp_path / "gone.xml"))
    with TestPipeline() as p:
        out = p | beam.Create([good, broken, missing]) | ReadFeeds(Fetcher(FetchConfig()), str(tmp_path / "state"))
        assert_that(out["entries"] | beam.Map(lambda e: e.link), equal_to([
            fixture_url("techwire", "/2025/06/meta-invests-billions-in-scale-ai"),
            fixture_url("techwire", "/2025/06/scale-ai-pentagon-thunderforge-contract")]), label="entries")
        assert_that(out["rejects"] | beam.Map(lambda r: (r.url, r.stage, r.reason, r.feed_url)), equal_to([
            (broken.url, "feed", "bad_feed", None), (missing.url, "feed", "not_found", None)]), label="rejects")


def test_rss_091_feed():
    body = b"""<?xml version="1.0"?>
<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" "http://my.netscape.com/publish/formats/rss-0.91.dtd">
<rss version="0.91"><channel><title>Old School</title><link>https://old.example/</link>
<description>d</description><language>en-us</language>
<item><title>Ninety-one</title><link>https://old.example/91</link><description>An item.</description></item>
</channel></rss>"""
    entries, rejects, _ = parse_feed(body, "https://old.example/rss", NOW)
    assert [(e.link, e.title, e.summary, e.published_at) for e in entries] == [
        ("https://old.example/91", "Ninety-one", "An item.", None)]
    assert not rejects


def test_empty_and_non_feed_documents_are_rejected_with_distinct_reasons():
    with pytest.raises(BadFeed) as err:
        parse_feed(b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>', "x", NOW)
    assert err.value.reason == "empty_feed"
    with pytest.raises(BadFeed) as err:
        parse_feed(b'<?xml version="1.0"?><catalog><book>not a feed</book></catalog>', "x", NOW)
    assert err.value.reason == "bad_feed"


def test_json_feed_1_0_and_1_1():
    body = b"""{"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": [
      {"id": "1", "url": "https://j.example/a", "title": "A", "content_html": "<p>Hello <b>there</b></p>",
       "date_published": "2025-06-13T09:00:00-04:00", "authors": [{"name": "Ann"}, {"name": "Bo"}]},
      {"id": "2", "url": "/b", "summary": "Bee", "author": {"name": "Cy"}},
      {"id": "3", "content_text": "no url, not an article"}]}"""
    entries, rejects, bozo = parse_feed(body, "https://j.example/feed.json", NOW)
    assert [(r.url, r.reason) for r in rejects] == [("3", "no_link")]
    assert [(e.link, e.title, e.summary, e.author) for e in entries] == [
        ("https://j.example/a", "A", "Hello there", "Ann, Bo"), ("https://j.example/b", None, "Bee", "Cy")]
    assert entries[0].published_at == datetime(2025, 6, 13, 13, tzinfo=UTC)
    with pytest.raises(BadFeed):
        parse_feed(b'{"version": "https://jsonfeed.org/version/1", "items": [', "x", NOW)
    with pytest.raises(BadFeed):
        parse_feed(b'{"hello": "world"}', "x", NOW)


def test_unchanged_feed_is_read_once_and_costs_nothing_more(tmp_path):
    feed = FeedSpec(str(FIXTURES / "feeds" / "econ.xml"))
    state_dir = str(tmp_path / "state")

    def read_once(run_id: str, expected_entries: int):
        with TestPipeline() as p:
            out = p | beam.Create([feed]) | ReadFeeds(Fetcher(FetchConfig()), state_dir)
            _ = (out["states"] | beam.combiners.ToList()
                 | beam.Map(lambda states: state.commit(state_dir, write_feed_states(states, state_dir, run_id))))
            assert_that(out["entries"] | beam.combiners.Count.Globally(), equal_to([expected_entries]))

    read_once("20250613T000000Z-first", 3)
    read_once("20250614T000000Z-second", 0)
    (saved,) = load_feed_states(state_dir)[0].values()
    assert saved.feed_url == feed.url and len(saved.content_hash) == 64


def test_entity_expansion_bomb_is_not_expanded():
    levels = "".join('<!ENTITY l{} "{}">'.format(i, f"&l{i - 1};" * 10) for i in range(1, 10))
    body = (f'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY l0 "ha">{levels}]>'
            '<rss version="2.0"><channel><title>&l9;</title><item><title>&l9;</title>'
            "<link>https://a.example/1</link></item></channel></rss>").encode()
    entries, _, bozo = parse_feed(body, "bomb.xml", NOW)  # a billion "ha"s if entities were expanded
    assert bozo and [e.link for e in entries] == ["https://a.example/1"]
    assert all(len(e.title or "") < 100 for e in entries)


def test_unparseable_entry_link_is_a_reject_not_a_crash():
    body = b"""<rss version="2.0"><channel><title>t</title>
    <item><title>bad</title><link>http://[::1/broken</link></item>
    <item><title>ok</title><link>https://a.example/ok</link></item></channel></rss>"""
    entries, rejects, _ = parse_feed(body, "https://site.example/rss", NOW)
    assert [e.link for e in entries] == ["https://a.example/ok"]
    assert [(r.url, r.reason) for r in rejects] == [("http://[::1/broken", "bad_url")]


def test_a_feed_failing_for_the_same_reason_is_one_reject_row_from_its_first_failure(tmp_path):
    """A broken feed is listed as failing by every run, but stored in rejects/ once per change of its state:
    a new reason, or a failure after it was read again."""
    feed = FeedSpec("feeds/news.xml", location=str(tmp_path / "news.xml"))
    state_dir = str(tmp_path / "state")

    def read(run_id: str, rejects: list[tuple[str, str]]) -> None:
        with TestPipeline() as p:
            out = p | beam.Create([feed]) | ReadFeeds(Fetcher(FetchConfig()), state_dir)
            _ = (out["states"] | beam.combiners.ToList()
                 | beam.Map(lambda states: state.commit(state_dir, write_feed_states(states, state_dir, run_id))))
            assert_that(out["rejects"] | beam.Map(lambda r: (r.url, r.reason)), equal_to(rejects))

    read("20250601T000000Z-run001", [(feed.url, "not_found")])  # named as the config names it
    read("20250602T000000Z-run002", [])  # failing as before: no row
    (tmp_path / "news.xml").write_text("<html>an error page</html>")
    read("20250603T000000Z-run003", [(feed.url, "bad_feed")])  # another reason: a row
    read("20250604T000000Z-run004", [])
    failing = load_feed_states(state_dir)[0][feed.url]
    assert failing.failing == "bad_feed" and failing.failing_since.startswith("20") and failing.content_hash is None
    (tmp_path / "news.xml").write_bytes((FIXTURES / "feeds" / "econ.xml").read_bytes())
    read("20250605T000000Z-run005", [])  # read again
    assert load_feed_states(state_dir)[0][feed.url].failing is None
    (tmp_path / "news.xml").unlink()
    read("20250606T000000Z-run006", [(feed.url, "not_found")])  # failing anew


def test_entries_carry_the_feed_title_and_the_configs_name():
    entries, _, _ = parse_feed((FIXTURES / "feeds" / "ledger.xml").read_bytes(), "feed.xml", NOW, "Ledger")
    assert {(e.feed_name, e.feed_title) for e in entries} == {("Ledger", "The Daily Ledger")}


def _at_poll(element, timestamp=beam.DoFn.TimestampParam):
    return element, int(timestamp.micros // 1_000_000)


@needs_prism
@pytest.mark.parametrize("seeded", [False, True], ids=["first-read", "seeded-from-a-run"])
def test_a_streams_feed_reads_keep_each_feeds_state_across_polls(tmp_path, seeded):
    """ReadFeedsKeyed on Prism: a feed's validators are keyed state, seeded from the snapshot a batch run
    committed, so an unchanged feed yields nothing from its second read on (or its first, after a run) and
    a feed failing for the same reason is one reject row."""
    feed = FeedSpec("feeds/econ.xml", location=str(FIXTURES / "feeds" / "econ.xml"))
    broken = FeedSpec("feeds/gone.xml", location=str(tmp_path / "gone.xml"))
    state_dir = str(tmp_path / "state")
    if seeded:
        with TestPipeline() as p:
            out = p | beam.Create([feed]) | ReadFeeds(Fetcher(FetchConfig()), state_dir)
            _ = (out["states"] | beam.combiners.ToList() | beam.Map(
                lambda states: state.commit(state_dir, write_feed_states(states, state_dir, "20251204T095900Z-run"))))
    t0 = 1_764_842_400  # 2025-12-04T10:00:00Z
    polls = (TestStream()
             .add_elements([TimestampedValue((f.url, f), t0) for f in (feed, broken)])
             .advance_watermark_to(t0 + 1)
             .add_elements([TimestampedValue((f.url, f), t0 + 5) for f in (feed, broken)])
             .advance_watermark_to_infinity())
    with TestPipeline(options=streaming_on_prism()) as p:
        keyed = p | polls | beam.Map(lambda kv: kv).with_output_types(tuple[str, Any])  # as the polls give them
        out = keyed | ReadFeedsKeyed(Fetcher(FetchConfig()), state_dir)
        first = [] if seeded else [(feed.url, t0)] * 3
        assert_that(out["entries"] | beam.Map(lambda e: e.feed_url) | "EntryPolls" >> beam.Map(_at_poll),
                    equal_to(first), label="entries")
        assert_that(out["rejects"] | beam.Map(lambda r: (r.url, r.reason)) | "RejectPolls" >> beam.Map(_at_poll),
                    equal_to([((broken.url, "not_found"), t0)]), label="rejects")
        unchanged = [t0, t0 + 5] if seeded else [t0 + 5]
        assert_that(out[metrics.COUNTS] | beam.Filter(lambda c: c[1] and c[0] != "entries_seen")
                    | "CountPolls" >> beam.Map(_at_poll),
                    equal_to([(("feeds_polled", 1), t) for t in (t0, t0, t0 + 5, t0 + 5)]
                             + [(("feeds_failing", 1), t) for t in (t0, t0 + 5)]
                             + [(("feeds_unchanged", 1), t) for t in unchanged]), label="counts")
        assert_that(out["states"] | beam.Map(lambda s: (s.feed_url, s.failing, s.content_hash is not None)),
                    equal_to([(feed.url, None, True)] * 2 + [(broken.url, "not_found", False)] * 2), label="states")
