"""Catching the story index up with articles an interrupted run stored but never indexed."""

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.config import StoriesConfig
from pipelines.records import Run
from pipelines.sinks import run_of
from pipelines.stories.assign import AssignStories, assign_batch
from pipelines.stories.index import StoryIndex
from pipelines.stories.recover import COLUMNS, restore, unindexed_files
from pipelines.text import content_hash
from pipelines.urls import stable_id
from tests.stories.helpers import T0, TEXTS, StagedRefs, feat, save_index
from tests.stories.test_assign import article

CFG = StoriesConfig()
WINDOW = timedelta(days=3)


def row(article_id, text, story_id, run_id, hours=0.0, duplicate_of=None):
    when = T0 + timedelta(hours=hours)
    return {"article_id": article_id, "story_id": story_id, "duplicate_of": duplicate_of, "source": "src",
            "title": None, "text": text, "language": "en", "published_at": when, "fetched_at": when,
            "content_hash": content_hash(text), "run_id": run_id}


def test_restore_adds_stored_articles_under_their_stories_and_a_follow_up_joins():
    index = StoryIndex()
    rows = [row("a", TEXTS["deal"], "story-a", "r1"), row("copy", TEXTS["deal"], "story-a", "r1", 1, "a"),
            row("w", TEXTS["weather"], "story-w", "r1", 2)]
    assert restore(index, rows, T0) == 3
    assert restore(index, rows, T0) == 0  # what the index holds is not added twice
    assert {a: index.articles[a].story_id for a in ("a", "copy", "w")} == {
        "a": "story-a", "copy": "story-a", "w": "story-w"}
    assert index.stories["story-a"].article_count == 2 and index.stories["story-a"].representative_id == "a"
    r = assign_batch(index, [feat("b", TEXTS["deal2"], 5), feat("c", TEXTS["deal"], 6)], CFG, T0)
    got = {x.article_id: (x.story_id, x.duplicate_of) for x in r.assignments}
    assert got == {"b": ("story-a", None), "c": ("story-a", "a")}  # continues, and copies are still marked


def write(directory, run_id, rows):
    directory.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=pa.schema([
        (c, pa.timestamp("us", tz="UTC") if c.endswith("_at") else pa.string()) for c in COLUMNS]))
    pq.write_table(table, directory / f"{run_id}-00000-of-00001.parquet")


def test_unindexed_files_are_those_of_runs_after_the_snapshot(tmp_path):
    articles = tmp_path / "articles"
    for day, run_id in (("2025-06-11", "20250611T000000Z-aaa"), ("2025-06-12", "20250612T000000Z-bbb"),
                        ("2025-06-12", "20250612T060000Z-ccc"), ("2025-06-13", "20250613T000000Z-now")):
        write(articles / f"ingest_date={day}", run_id, [])
    saved = StoryIndex(saved_by="20250612T000000Z-bbb")
    now = datetime(2025, 6, 13, tzinfo=UTC)
    files = unindexed_files(str(tmp_path), saved.saved_by, bool(saved.stories), "20250613T000000Z-now", now, WINDOW)
    assert [run_of(f) for f in files] == ["20250612T060000Z-ccc"]  # later than the snapshot, before this run
    # no snapshot at all: the runs within the window
    assert [run_of(f) for f in unindexed_files(str(tmp_path), None, False, "20250613T000000Z-now", now,
                                               timedelta(days=1))] == ["20250612T000000Z-bbb", "20250612T060000Z-ccc"]
    # a snapshot from before snapshots named their run: nothing to compare with
    old = StoryIndex()
    assign_batch(old, [feat("a", TEXTS["deal"])], CFG, T0)
    assert unindexed_files(str(tmp_path), old.saved_by, bool(old.stories), "20250613T000000Z-now", now, WINDOW) == []


def test_composite_restores_an_interrupted_run_before_assigning(tmp_path):
    state_dir, articles = str(tmp_path / "state"), tmp_path / "out" / "articles"
    index = StoryIndex(saved_by="20250611T000000Z-prev")
    save_index(state_dir, "20250611T000000Z-prev", index)
    # the interrupted run stored "a" (its own story) but died before saving the index
    write(articles / "ingest_date=2025-06-12", "20250612T000000Z-died",
          [row("a", TEXTS["deal"], stable_id("story", "a"), "20250612T000000Z-died")])
    run = Run("20250613T000000Z-next", datetime(2025, 6, 13, tzinfo=UTC))
    with TestPipeline() as p:
        out = (p | beam.Create([article("b", TEXTS["deal2"], 2)])
               | "Stage" >> StagedRefs(run, tmp_path / "staged")
               | AssignStories(CFG, state_dir, run, str(tmp_path / "out")))
        assert_that(out["assignments"] | beam.Map(lambda a: (a.article_id, a.story_id)),
                    equal_to([("b", stable_id("story", "a"))]), label="articles")
        assert_that(out["stories"] | beam.Map(lambda s: (s.story_id, s.article_count)),
                    equal_to([(stable_id("story", "a"), 2)]), label="stories")
        assert_that(out["index"] | beam.Map(lambda name: json.loads(gzip.decompress(
            Path(state_dir, name).read_bytes()).splitlines()[0])["saved_by"]),
                    equal_to([run.run_id]), label="snapshot names its run")
