"""Wires the stages into one unbounded pipeline: ``newsbeam stream`` on a runner that streams; no logic of its own.

ticks (PeriodicImpulse, every second) -> Polls (every [stream] poll_interval: the feed list, keyed by feed)
      -> ReadFeedsKeyed (validators in keyed state) -> SkipSeen(entries) -> FetchPages -> ExtractArticles
      -> SkipSeen(article ids) -> StoryFeatures -> AssignStoriesKeyed (the index's snapshot name in keyed state)
      -> CommitPoll (each poll's datasets, stories_current, state and summary, in its window)

The stages are those of batch runs (``pipelines.pipeline``); what differs is the source, the already-stored
check (keyed state seeded once from the datasets instead of a read of them per run), the story step's state
and the commit, which takes each poll's window whole. Every element is timestamped with the poll that read it
and windowed by the second, so a poll is one window: it closes, and is committed, as soon as its last element
is through, and its run is ``Run.at`` that second. Steps that keep state across polls (feed states, keys
seen, the story index) see all polls in the global window and put their output back in the poll's window.

Articles do not wait on disk as in a batch run (``pipelines.staging``): a poll holds only what its feeds
added since the last one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from apache_beam.transforms.window import FixedWindows
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp

from pipelines import metrics
from pipelines.config import Config
from pipelines.extract import ExtractArticles
from pipelines.feeds import ReadFeedsKeyed
from pipelines.fetch import Fetcher, FetchPages
from pipelines.known import (
    ARTICLE_COLUMNS,
    ENTRY_COLUMNS,
    SkipSeen,
    article_order,
    entry_key,
    entry_lookups,
    entry_order,
)
from pipelines.paths import read_bytes, within, write_bytes
from pipelines.pipeline import state_dir
from pipelines.polls import CommitPoll, polls_dir, started_count_file, started_dir, stop_file
from pipelines.records import FeedSpec, Run
from pipelines.stories.assign import AssignStoriesKeyed, StoryFeatures


def poll_feeds(tick: float, feeds: tuple[FeedSpec, ...], stream: Run, output: str,
               polls: int | None = None) -> Iterator[tuple[str, FeedSpec]]:
    """The feed list, keyed by feed, at the ticks that start a poll: start + k * poll_every seconds, while the
    previous poll is committed (a tick that finds it under way is skipped, as the loop of runs skips the
    ticks a long poll overran, so polls never overlap), for ``polls`` polls at most, unless the stream was
    asked to stop (``pipelines.polls.stop_file``). Each poll started is recorded for the command, which ends
    the pipeline once every poll started is committed: the ticks themselves never end, since the end of its
    input would let the keyed steps' expiry timers fire before the last poll's elements reach them.

    One poll at a time is also what keeps the keyed steps right on Prism, which was seen to run bundles of
    one key of a stateful step at once, each with the state as it was before the other (a poll's bundles
    are all done when its commit has written its summary)."""
    if round(tick - stream.started_at.timestamp()) % (stream.poll_every or 1):
        return
    if FileSystems.exists(stop_file(output, stream)) or _under_way(output, stream):
        return
    count_file = started_count_file(output, stream)
    started = int(read_bytes(count_file) or 0) if FileSystems.exists(count_file) else 0
    if polls is not None and started >= polls:
        return
    run = stream.at(Timestamp.of(tick))
    write_bytes(f"{started_dir(output, stream)}/{run.run_id}", b"")
    write_bytes(count_file, str(started + 1).encode())
    yield from ((feed.url, feed) for feed in feeds)


def _under_way(output: str, stream: Run) -> bool:
    """Whether a poll started and is not committed: its marker is there and its summary is not."""
    def names(pattern: str) -> set[str]:
        found = FileSystems.match([pattern])[0].metadata_list
        return {m.path.rsplit("/", 1)[-1].removesuffix(".json") for m in found}
    return bool(names(within(started_dir(output, stream), "*")) - names(within(polls_dir(output, stream), "*.json")))


def _by_poll(pcoll, label: str):
    return pcoll | label >> beam.WindowInto(FixedWindows(1))


def _seen(entry) -> tuple[str, int]:
    return "entries_seen", 1


def build_stream(p: beam.Pipeline, config: Config, stream: Run, polls: int | None = None,
                 fetcher: Fetcher | None = None, entries=None):
    """The stream's pipeline; returns the PCollection of its polls' summaries. ``entries``: feed entries,
    each timestamped with its poll, in place of the feeds read on a schedule (tests)."""
    output = config.output.path
    fetcher = fetcher or Fetcher(config.fetch)
    keep = config.stories.window_days
    rejects, counts, states = [], [], []
    if entries is None:
        start = stream.started_at.timestamp()
        ticks = p | "Ticks" >> PeriodicImpulse(start_timestamp=start, stop_timestamp=MAX_TIMESTAMP, fire_interval=1)
        feeds = ticks | "Polls" >> beam.FlatMap(poll_feeds, tuple(config.feeds), stream, output,
                                                polls).with_output_types(tuple[str, Any])
        read = feeds | "ReadFeeds" >> ReadFeedsKeyed(fetcher, state_dir(output, "feeds"))
        entries = read["entries"]
        feed_level, entry_level = read["rejects"] | "ByLevel" >> beam.Partition(_level, 2)  # type: ignore[arg-type]
        settled = entry_level | "SkipSettledRejects" >> SkipSeen(
            output, (), key=_url, lookups=_urls, order=_reject_order, link=_url, keep_days=keep, settled=True)
        rejects += [feed_level, settled["new"], settled["rejects"]]
        counts += [read[metrics.COUNTS], settled[metrics.COUNTS]]
        states.append(read["states"])
    else:
        counts.append(entries | "CountEntries" >> beam.Map(_seen))
    new = entries | "SkipKnownEntries" >> SkipSeen(
        output, ENTRY_COLUMNS, key=entry_key, lookups=entry_lookups, order=entry_order, link=_link, keep_days=keep,
        settled=True)
    fetched = _by_poll(new["new"], "EntriesByPoll") | "FetchPages" >> FetchPages(fetcher)
    extracted = fetched["pages"] | "ExtractArticles" >> ExtractArticles(config.extract)
    articles = extracted["articles"] | "SkipKnownArticles" >> SkipSeen(
        output, ARTICLE_COLUMNS, key=_article_id, lookups=_article_ids, order=article_order, link=_url,
        keep_days=keep)
    featured = _by_poll(articles["new"], "ArticlesByPoll") | "StoryFeatures" >> StoryFeatures(stream)
    stories = featured["main"] | "AssignStories" >> AssignStoriesKeyed(config.stories, state_dir(output, "stories"),
                                                                       stream, output)
    rejects += [new["rejects"], fetched["rejects"], extracted["rejects"], articles["rejects"], featured["rejects"],
                stories["rejects"]]
    counts += [new[metrics.COUNTS], articles[metrics.COUNTS], stories[metrics.COUNTS]]
    inputs = {
        "article": featured["main"] | "Articles" >> beam.Map(lambda pair: pair[0]),
        "assignment": stories["assignments"],
        "story": stories["stories"],
        "current": stories["current"],
        "index": stories["index"],
        "state": states[0] if states else p | "NoStates" >> beam.Create([]),
    }
    polled = {name: _by_poll(pcoll, f"{name.title()}ByPoll") for name, pcoll in inputs.items()}
    # a Flatten's inputs share their windowing: each is put in its poll's window first
    for name, parts in (("reject", rejects), ("count", counts)):
        polled[name] = (tuple(_by_poll(part, f"{name.title()}ByPoll{k}") for k, part in enumerate(parts))
                        | f"All{name.title()}s" >> beam.Flatten())
    return polled | "CommitPoll" >> CommitPoll(output, stream, state_dir(output, "stories"), state_dir(output, "feeds"))


def _level(reject, _partitions: int) -> int:
    return int(reject.feed_url is not None)  # 0: a feed's, 1: an entry's


def _url(item) -> str:
    return item.url


def _urls(item) -> list[str]:
    return [item.url]


def _link(entry) -> str:
    return entry.link


def _article_id(article) -> str:
    return article.article_id


def _article_ids(article) -> list[str]:
    return [article.article_id]


def _reject_order(reject) -> tuple:
    return (reject.url, reject.stage, reject.reason)
