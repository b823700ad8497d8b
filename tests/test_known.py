from datetime import UTC, datetime

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.known import SkipKnown, entry_key, entry_order, stored_keys
from tests.conftest import make_entry

T = datetime(2025, 6, 13, tzinfo=UTC)


def test_stored_keys_cover_every_url_form():
    row = {"article_id": "abc", "url": "https://a.example/x?utm_source=rss", "final_url": "https://a.example/x",
           "canonical_url": "https://a.example/x"}
    assert stored_keys(row) == [("url", "https://a.example/x"), ("id", "abc")]


def test_skip_known_drops_stored_and_keeps_first_of_duplicates():
    stored = make_entry("https://a.example/old")
    first = make_entry("https://a.example/dup?utm_source=x", published_at=T)
    second = make_entry("https://a.example/dup#comments", published_at=T.replace(hour=5),
                        feed_url="https://other.example/feed")
    fresh = make_entry("https://a.example/new")
    with TestPipeline() as p:
        keys = p | "Stored" >> beam.Create([("url", "https://a.example/old"), ("id", "https://a.example/new")])
        out = (p | "Entries" >> beam.Create([stored, first, second, fresh])
               | SkipKnown(keys, "url", key=entry_key, order=entry_order, link=lambda e: e.link))
        assert_that(out.new | beam.Map(lambda e: e.link), equal_to([first.link, fresh.link]), label="new")
        assert_that(out.rejects | beam.Map(lambda r: (r.url, r.feed_url, r.stage, r.reason, r.detail)),
                    equal_to([(second.link, second.feed_url, "dedup", "duplicate_url",
                               f"same article as {first.link}")]), label="rejects")
