"""Catching the story index up with articles that an interrupted run stored but never indexed.

A run commits the story index only after its article files are written (``pipelines.sinks.CommitSnapshot``),
so a run that dies in between leaves articles in ``articles/`` that the index does not know: their stories
would not continue and later copies of them would not be marked. Each snapshot names the run that saved
it (``StoryIndex.saved_by``); the next run finds the article files of later runs (a file's name starts
with its run's id, and ids sort by start time) and adds those articles to the index under the story and
duplicate status they were stored with, before it assigns its own. Nothing stored is changed.

An index with no snapshot at all (the first run died, or the state was removed) is rebuilt the same way
from the articles of runs that started within the window. Only the date partitions such runs can have
written are listed, so the cost does not grow with the history. Runs with no new articles save no index
and write no article file (after the first), so a quiet spell costs the next run nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress
from datetime import datetime, timedelta

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines.figures import from_row
from pipelines.sinks import partition_dir, run_of
from pipelines.stories.features import article_features
from pipelines.stories.index import ArticleState, StoryIndex, StoryState

COLUMNS = ["article_id", "story_id", "duplicate_of", "source", "title", "text", "language", "figures", "published_at",
           "fetched_at", "content_hash", "run_id"]


def unindexed_files(output: str, saved_by: str | None, held: bool, current_run: str, started_at: datetime,
                    window: timedelta) -> list[str]:
    """Article files written by runs after the index's snapshot (saved by the run ``saved_by``; ``held``: the
    index holds stories) and before the current run, in run order."""
    if saved_by is not None:
        since = saved_by
    elif not held:  # no usable snapshot: rebuild from the runs within the window
        since = f"{started_at - window:%Y%m%dT%H%M%SZ}"
    else:  # a snapshot from before snapshots named their run: nothing to compare with
        return []
    # only the date partitions those runs can have written (a run's partition is its start date), and none
    # older than the window: their stories would be pruned again at once
    first = (started_at - window).date()
    with suppress(ValueError):  # a run id that does not start with its date: list the whole window
        first = max(first, datetime.strptime(since[:8], "%Y%m%d").date())
    days = [first + timedelta(days=k) for k in range((started_at.date() - first).days + 1)]
    patterns = [f"{partition_dir(output, 'articles', day.isoformat())}/*.parquet" for day in days]
    paths = [m.path for result in FileSystems.match(patterns) for m in result.metadata_list] if patterns else []
    return sorted((p for p in paths if since < run_of(p) < current_run), key=lambda p: (run_of(p), p))


def read_rows(paths: Iterable[str]) -> list[dict]:
    rows: list[dict] = []
    for path in paths:
        with FileSystems.open(path, compression_type="uncompressed") as f:
            rows.extend(pq.read_table(f, columns=COLUMNS).to_pylist())
    return rows


def restore(index: StoryIndex, rows: Iterable[dict], now: datetime) -> int:
    """Add stored articles the index lacks, under their stored stories, as the run starting at ``now``
    does; returns how many were added.

    Rows are taken in (run, time, article id) order, as their runs assigned them. A story the index
    does not hold is re-created with the row's title; an article's terms join its story's centroid
    unless it was stored as a copy, as in assignment.
    """
    def time_of(row: dict) -> datetime:
        return row["published_at"] or row["fetched_at"]

    added = 0
    for row in sorted(rows, key=lambda r: (r["run_id"], time_of(r), r["article_id"])):
        if row["article_id"] in index.articles:
            continue
        time = time_of(row)
        feat = article_features(row["article_id"], row["source"], row["title"], row["text"], row["language"],
                                time, row["content_hash"], dated=row["published_at"] is not None)
        story = index.stories.get(row["story_id"])
        if story is None:
            story = StoryState(story_id=row["story_id"], representative_id=row["article_id"], title=row["title"],
                               first_seen=time, last_seen=time, article_count=0, sources=set(), centroid={})
            index.add_story(story)
        if row["duplicate_of"] is None or not story.centroid:
            index.merge_into_centroid(story, dict(feat.vector()))
        index.add_article(ArticleState(feat.article_id, story.story_id, time, feat.content_hash, feat.minhash),
                          feat.source, time, feat.dated, now, copy=row["duplicate_of"] is not None,
                          title=row["title"], terms=feat.vector(), figures=map(from_row, row.get("figures") or ()))
        added += 1
    return added
