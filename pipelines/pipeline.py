"""Wires the stages into one batch pipeline; no logic of its own.

feeds -> ReadFeeds -> SkipKnown(entries, incl. settled rejects) -> FetchPages -> ExtractArticles -> StoryFeatures
      -> StageArticles -> SkipKnown(article refs) -> AssignStories(refs) -> UnstageArticles(refs + assignments)
      -> WriteDataset(articles, stories, rejects) -> WriteCurrent(stories_current, renamed into place once the
         three datasets are written) -> CommitSnapshot(story index after stories_current; feed states), once all
         three datasets are written

From StageArticles to UnstageArticles the articles and their story features wait on disk and only small
refs move (see ``pipelines.staging``).
"""

from __future__ import annotations

import apache_beam as beam

from pipelines.config import Config
from pipelines.current import WriteCurrent
from pipelines.extract import ExtractArticles
from pipelines.feeds import ReadFeeds, is_retried, write_feed_states
from pipelines.fetch import Fetcher, FetchPages
from pipelines.known import (
    ARTICLE_COLUMNS,
    ENTRY_COLUMNS,
    SkipKnown,
    SkipSettled,
    article_key,
    article_lookups,
    article_order,
    entry_key,
    entry_lookups,
    entry_order,
)
from pipelines.records import Run
from pipelines.sinks import CommitSnapshot, WriteDataset, temp_dir
from pipelines.staging import StageArticles, UnstageArticles
from pipelines.stories.assign import AssignStories, StoryFeatures


def state_dir(output: str, name: str) -> str:
    return f"{output.rstrip('/')}/_state/{name}"


def build(p: beam.Pipeline, config: Config, run: Run, fetcher: Fetcher | None = None,
          all_stories: bool = False) -> None:
    """The run's pipeline. ``all_stories``: write the row of every story the index holds, not only of those
    the run touched (a stories file was damaged and set aside)."""
    output = config.output.path
    fetcher = fetcher or Fetcher(config.fetch)

    feeds = p | "Feeds" >> beam.Create(list(config.feeds))
    read = feeds | "ReadFeeds" >> ReadFeeds(fetcher, state_dir(output, "feeds"))
    entries = read["entries"] | "SkipKnownEntries" >> SkipKnown(
        output, ENTRY_COLUMNS, key=entry_key, lookups=entry_lookups, order=entry_order, link=lambda e: e.link,
        settled=True)
    fetched = entries["new"] | "FetchPages" >> FetchPages(fetcher)
    extracted = fetched["pages"] | "ExtractArticles" >> ExtractArticles(config.extract)
    featured = extracted["articles"] | "StoryFeatures" >> StoryFeatures(run)
    staged = featured["main"] | "StageArticles" >> StageArticles(f"{temp_dir(output, run.run_id)}/staged")
    refs = staged["main"] | "SkipKnownArticles" >> SkipKnown(
        output, ARTICLE_COLUMNS, key=article_key, lookups=article_lookups, order=article_order,
        link=lambda a: a.url)
    stories = refs["new"] | "AssignStories" >> AssignStories(config.stories, state_dir(output, "stories"), run,
                                                             output=output, all_stories=all_stories)
    articles = {"refs": refs["new"], "assignments": stories["assignments"]} | "UnstageArticles" >> UnstageArticles()

    feed_rejects = read["rejects"] | "SkipSettledRejects" >> SkipSettled(output)
    written = articles["main"] | "WriteArticles" >> WriteDataset("articles", output, run)
    story_rows = stories["stories"] | "WriteStories" >> WriteDataset("stories", output, run)
    rejects = (
        (feed_rejects, entries["rejects"], fetched["rejects"], extracted["rejects"], featured["rejects"],
         staged["rejects"], refs["rejects"], stories["rejects"], articles["rejects"], written["rejects"],
         story_rows["rejects"])
        | "AllRejects" >> beam.Flatten()
    )
    reject_rows = rejects | "WriteRejects" >> WriteDataset("rejects", output, run)
    retry = rejects | "Retried" >> beam.Filter(is_retried) | "RetryByFeed" >> beam.Map(lambda r: (r.feed_url, r.url))
    # state is committed once every dataset of the run is written
    all_files = (written["files"], story_rows["files"], reject_rows["files"]) | "AllFiles" >> beam.Flatten()
    current = stories["current"] | "WriteCurrent" >> WriteCurrent(output, run, after=all_files)
    index_after = (all_files, current) | "FilesAndCurrent" >> beam.Flatten()
    _ = stories["index"] | "CommitIndex" >> CommitSnapshot(state_dir(output, "stories"), after=index_after)
    _ = (
        read["states"]
        | "AllFeedStates" >> beam.combiners.ToList()
        | "WriteFeedStates" >> beam.Map(write_feed_states, state_dir(output, "feeds"), run.run_id,
                                        retry=beam.pvalue.AsList(retry))
        | "CommitFeedStates" >> CommitSnapshot(state_dir(output, "feeds"), after=all_files)
    )
