"""The one failure mechanism: an element that raises in any stage is a reject row, and the run goes on."""

import shutil
from dataclasses import replace
from datetime import UTC, datetime

import apache_beam as beam
import pyarrow.dataset as ds
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

import pipelines.extract
import pipelines.feeds
import pipelines.known
import pipelines.sinks
import pipelines.stories.assign
from pipelines.failures import Guarded, describe, subjects
from pipelines.fetch import Fetcher, ReplayTransport
from pipelines.pipeline import build
from pipelines.records import FeedSpec, Run
from pipelines.summary import build_summary, counters_of
from tests.conftest import FIXTURE_ARTICLES, fixture_url, make_entry

RUN = Run("20250614T000000Z-fault1", datetime(2025, 6, 14, tzinfo=UTC))
VICTIM = fixture_url(FIXTURE_ARTICLES.ARTICLES["llama"]["outlet"], FIXTURE_ARTICLES.ARTICLES["llama"]["path"])


def test_subjects_name_the_entries_an_element_stands_for():
    a, b = make_entry("https://a.example/1"), make_entry("https://b.example/2", feed_url="https://f.example/rss")
    assert subjects(FeedSpec("https://f.example/rss")) == [("https://f.example/rss", None)]
    assert subjects(a) == [("https://a.example/1", "https://news.example/feed.xml")]
    assert subjects((("b.example", 0), [a, b])) == [subjects(a)[0], subjects(b)[0]]  # a host group
    assert subjects(("key", {"item": [b], "stored": [True]})) == subjects(b)  # a join


def test_describe_gives_type_message_and_where():
    try:
        {}["missing"]
    except KeyError as e:
        detail = describe(e)
    assert detail.startswith("KeyError: 'missing' (File ") and "test_failures.py" in detail


def _explode_on_three(x):
    if x == 3:
        raise ValueError("three is right out")
    yield x * 10


def test_guarded_turns_a_raising_element_into_reject_rows():
    with TestPipeline() as p:
        entries = p | beam.Create([make_entry(f"https://a.example/{i}") for i in (1, 3)])
        out = entries | Guarded(beam.FlatMap(lambda e: _explode_on_three(int(e.link[-1]))), "fetch")
        assert_that(out["main"], equal_to([10]), label="main")
        assert_that(out["rejects"] | beam.Map(lambda r: (r.url, r.stage, r.reason, r.detail.split(" (")[0])),
                    equal_to([("https://a.example/3", "fetch", "internal_error",
                               "ValueError: three is right out")]), label="rejects")


class _RaisingReplay(ReplayTransport):
    """Replays the fixtures, but breaks (with an exception no fetcher expects) on one URL."""

    def request(self, url, **kw):
        if url == VICTIM:
            raise RuntimeError("transport bug")
        return super().request(url, **kw)


def _raise_for(victim_of, real):
    def patched(*args, **kwargs):
        if victim_of(*args, **kwargs):
            raise RuntimeError("injected fault")
        return real(*args, **kwargs)
    return patched


def _run_fixtures(config, fetcher=None):
    p = TestPipeline()
    build(p, config, RUN, fetcher)
    result = p.run()
    result.wait_until_finish()
    return build_summary(counters_of(result), RUN, RUN.started_at, config.output.path)


def _read(out, name):
    return ds.dataset(f"{out}/{name}", format="parquet", partitioning="hive").to_table().to_pylist()


FAULTS = {
    # stage: (what to patch, how it breaks, the url of the reject row, whether it is an entry)
    "feed": (pipelines.feeds, "parse_feed", lambda body, url, now, name=None: url.endswith("ledger.xml"), "ledger.xml",
             False),
    "dedup": (pipelines.known, "canonicalize", lambda url: url == VICTIM, VICTIM, True),
    "extract": (pipelines.extract, "page_meta", lambda tree, url=None: url == VICTIM, VICTIM, True),
    "stories": (pipelines.stories.assign, "features_of", lambda article, run: article.url == VICTIM, VICTIM, True),
    "stories-in-batch": (pipelines.stories.assign, "_near_copy_of", lambda index, feat, t: feat.url == VICTIM,
                         VICTIM, True),
    "write": (pipelines.sinks, "checked_row", lambda record, run, schema: getattr(record, "url", None) == VICTIM,
              VICTIM, True),
}


@pytest.mark.parametrize("stage", [*FAULTS, "fetch"])
def test_a_fault_in_any_stage_is_a_reject_and_the_run_reconciles(fixtures_config, monkeypatch, stage):
    fetcher = None
    if stage == "fetch":
        fetcher = Fetcher(fixtures_config.fetch, transport=_RaisingReplay(fixtures_config.fetch.replay))
        url, entry_level = VICTIM, True
    else:
        module, name, victim_of, url, entry_level = FAULTS[stage]
        monkeypatch.setattr(module, name, _raise_for(victim_of, getattr(module, name)))
    summary = _run_fixtures(fixtures_config, fetcher)

    out = fixtures_config.output.path
    errors = [r for r in _read(out, "rejects") if r["reason"] == "internal_error"]
    assert len(errors) == 1, errors
    (error,) = errors
    assert error["stage"] == stage.split("-")[0] and error["url"].endswith(url)
    assert "injected fault" in error["detail"] or "transport bug" in error["detail"]
    assert (error["feed_url"] is not None) == entry_level
    assert summary["reconciled"], summary
    assert summary["rejects"]["by_reason"].get("internal_error") == 1
    articles = _read(out, "articles")
    if entry_level:  # every other article of the fixtures is still stored
        assert VICTIM not in {a["url"] for a in articles}
        assert len(articles) == 25 and summary["entries"]["seen"] == 27
    else:  # the feed's three entries were never seen
        assert summary["entries"]["seen"] == 24 and summary["feeds"]["rejected"] == 2


def test_an_article_the_index_holds_but_the_dataset_lacks_is_stored_again(fixtures_config, monkeypatch):
    """A write that failed after assignment must not hide the article from later runs."""
    module, name, victim_of, *_ = FAULTS["write"]
    with monkeypatch.context() as m:
        m.setattr(module, name, _raise_for(victim_of, getattr(module, name)))
        _run_fixtures(fixtures_config)
    shutil.rmtree(f"{fixtures_config.output.path}/_state/feeds")  # as if the feeds changed: entries seen again
    second = replace(RUN, run_id="20250614T010000Z-fault2")
    p = TestPipeline()
    build(p, fixtures_config, second)
    result = p.run()
    result.wait_until_finish()
    summary = build_summary(counters_of(result), second, second.started_at, fixtures_config.output.path)
    stored = [a for a in _read(fixtures_config.output.path, "articles") if a["url"] == VICTIM]
    assert len(stored) == 1 and stored[0]["run_id"] == second.run_id
    assert summary["reconciled"] and summary["articles_written"] == 1
