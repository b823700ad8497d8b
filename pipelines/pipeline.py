"""Wires the stages into one batch pipeline; no logic of its own.

feeds -> ReadFeeds -> SkipKnown(entries) -> FetchPages -> ExtractArticles -> SkipKnown(articles)
      -> AssignStories -> WriteDataset(articles, stories, rejects) -> SaveIndex
"""

from __future__ import annotations

import apache_beam as beam

from pipelines.config import Config
from pipelines.extract import ExtractArticles
from pipelines.feeds import ReadFeeds
from pipelines.fetch import Fetcher, FetchPages
from pipelines.known import ReadStoredKeys, SkipKnown, article_key, article_order, entry_key, entry_order
from pipelines.records import Run
from pipelines.sinks import SaveIndex, WriteDataset
from pipelines.stories.assign import AssignStories


def state_dir(output: str) -> str:
    return f"{output.rstrip('/')}/_state/stories"


def build(p: beam.Pipeline, config: Config, run: Run, fetcher: Fetcher | None = None) -> None:
    output = config.output.path
    fetcher = fetcher or Fetcher(config.fetch)

    stored = p | "ReadStoredKeys" >> ReadStoredKeys(output)
    feeds = p | "Feeds" >> beam.Create(list(config.feeds))
    read = feeds | "ReadFeeds" >> ReadFeeds(fetcher)
    entries = read.entries | "SkipKnownEntries" >> SkipKnown(
        stored, "url", key=entry_key, order=entry_order, link=lambda e: e.link)
    fetched = entries.new | "FetchPages" >> FetchPages(fetcher)
    extracted = fetched.pages | "ExtractArticles" >> ExtractArticles()
    articles = extracted.articles | "SkipKnownArticles" >> SkipKnown(
        stored, "id", key=article_key, order=article_order, link=lambda a: a.url)
    stories = articles.new | "AssignStories" >> AssignStories(config.stories, state_dir(output), run)

    written = stories["articles"] | "WriteArticles" >> WriteDataset("articles", output, run)
    _ = stories["stories"] | "WriteStories" >> WriteDataset("stories", output, run)
    _ = (
        (read.rejects, entries.rejects, fetched.rejects, extracted.rejects, articles.rejects)
        | "AllRejects" >> beam.Flatten()
        | "WriteRejects" >> WriteDataset("rejects", output, run)
    )
    _ = stories["index"] | "SaveIndex" >> SaveIndex(state_dir(output), run, after=written)
