"""The CommitPoll stage: a stream's poll, once all of it is through, committed in the order a batch run commits.

A stream (``pipelines.streaming``) brings everything a poll produced together in the poll's window: its
articles and their story assignments, its story rows, the stories it changed (for ``stories_current``), the
name of the story index's snapshot, its rejects, its feeds' states and its counts. The poll then commits like
a batch run, as the run ``<poll time>-<token>`` (``Run.at``):

1. each dataset's rows as one file in its partition, written aside and renamed into place
   (``pipelines.sinks.write_whole``): readers see a file whole or not at all;
2. the ``stories_current`` partitions of the stories it changed, each replaced in one rename;
3. the story index's snapshot, then the feed states (validators, failures, links to try again) are
   committed under ``_state/``;
4. its summary, reconciled like a run's from its rows and counts, is saved in the stream's ``_tmp/`` for the
   command to print, and under ``_runs/`` when it stored anything.

A poll killed before step 3 leaves files the next run or stream knows as stored (their entries and article
ids are read from the datasets) and restores to the story index (``pipelines.stories.recover``); a retried
commit keeps the files already in place and writes the rest.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipelines import state
from pipelines.current import replace_partitions
from pipelines.failures import describe, rejects_for
from pipelines.feeds import is_retried, load_feed_states, write_feed_states
from pipelines.paths import delete, write_bytes
from pipelines.records import Article, Reject, Run
from pipelines.sinks import checked_row, last_resort_row, row_counts, temp_dir, write_whole
from pipelines.summary import build_summary, save_summary, stored_anything
from schemas import DATASETS

INPUTS = ("article", "assignment", "story", "current", "index", "reject", "state", "count")


def polls_dir(output: str, stream: Run) -> str:
    """Where a stream's polls leave their summaries for the command to print (inside the stream's ``_tmp/``)."""
    return f"{temp_dir(output, stream.run_id)}/polls"


def started_dir(output: str, stream: Run) -> str:
    """Where a stream records each poll it starts (a file named after the poll's run)."""
    return f"{temp_dir(output, stream.run_id)}/started"


def started_count_file(output: str, stream: Run) -> str:
    """How many polls the stream has started (for ``--polls``: the markers in ``started_dir`` are deleted once
    the command has followed their polls)."""
    return f"{temp_dir(output, stream.run_id)}/started_count"


def stop_file(output: str, stream: Run) -> str:
    """The file that asks a stream to start no further poll."""
    return f"{temp_dir(output, stream.run_id)}/stop"


def assigned(articles: Iterable[Article], assignments: Iterable) -> list[Article]:
    """The articles with their story assignments, by article id; an article without one (the stories stage
    rejected it) is not written."""
    by_id = {a.article_id: a for a in assignments}
    return sorted((a.with_story(by_id[a.article_id].story_id, by_id[a.article_id].duplicate_of)
                   for a in articles if a.article_id in by_id), key=lambda a: a.article_id)


def rows_of(name: str, records: Iterable, run: Run, rejects: list[Reject]) -> list[dict[str, Any]]:
    """The records' rows for dataset ``name``; a record the schema cannot hold is a ``write`` reject instead
    (in ``rejects/`` itself, its last-resort row)."""
    rows = []
    for record in records:
        try:
            rows.append(checked_row(record, run, DATASETS[name]))
        except Exception as e:  # a value the schema cannot hold: this record only
            if name == "rejects":
                rows.append(last_resort_row(record, run))
            else:
                rejects.extend(rejects_for(record, "write", describe(e)))
    return rows


class _CommitFn(beam.DoFn):
    def __init__(self, output: str, stream: Run, stories_state: str, feeds_state: str):
        self._output, self._stream = output, stream
        self._stories_state, self._feeds_state = stories_state, feeds_state

    def process(self, joined: tuple[str, dict[str, list]], window=beam.DoFn.WindowParam) -> Iterator[dict]:
        run = self._stream.at(window.start)
        found = joined[1]
        rejects: list[Reject] = list(found["reject"])
        articles = rows_of("articles", assigned(found["article"], found["assignment"]), run, rejects)
        stories = rows_of("stories", sorted(found["story"], key=lambda s: s.story_id), run, rejects)
        reject_rows = rows_of("rejects", sorted(rejects, key=lambda r: (r.url, r.stage, r.reason)), run, [])
        for name, rows in (("articles", articles), ("stories", stories), ("rejects", reject_rows)):
            write_whole(self._output, name, run, rows)
        replace_partitions(self._output, run, found["current"])
        for name in sorted(found["index"]):
            state.commit(self._stories_state, name)
        states = list(found["state"])
        if states:
            state.commit(self._feeds_state, write_feed_states(states, self._feeds_state, run.run_id,
                                                              retry=self._retry(rejects)))
        counts: Counter = Counter()
        for name, n in found["count"]:
            counts[name] += n
        for name, rows in (("articles", articles), ("rejects", reject_rows)):
            counts.update(row_counts(name, rows))
        failing = [{"url": s.feed_url, "reason": s.failing, "since": s.failing_since}
                   for s in sorted(states, key=lambda s: s.feed_url) if s.failing]
        summary = {**build_summary(dict(counts), run, datetime.now(UTC), self._output, failing=failing),
                   "stream": self._stream.run_id}
        done = f"{polls_dir(self._output, self._stream)}/{run.run_id}.json"  # whole, once there: renamed into place
        write_bytes(f"{done}.part", json.dumps(summary, sort_keys=True).encode())
        FileSystems.rename([f"{done}.part"], [done])
        if stored_anything(summary):  # an idle poll adds no file: the stream's summary counts it
            save_summary(self._output, summary)
        delete([temp_dir(self._output, run.run_id)])
        yield summary

    def _retry(self, rejects: list[Reject]) -> list[tuple[str, str]]:
        """(feed, link) of the entries to try again: this poll's, and those the committed state carries (a
        stream tries an entry once; the next run or stream tries it again)."""
        committed, _ = load_feed_states(self._feeds_state)
        pairs = {(s.feed_url, link) for s in committed.values() for link in s.retry}
        pairs.update((r.feed_url, r.url) for r in rejects if is_retried(r) and r.feed_url is not None)
        return sorted(pairs)


class CommitPoll(beam.PTransform):
    """``{input: PCollection}`` for each of ``INPUTS``, in the polls' windows -> each poll's summary (dict),
    once the poll is committed."""

    def __init__(self, output: str, stream: Run, stories_state: str, feeds_state: str):
        super().__init__()
        self._args = (output, stream, stories_state, feeds_state)

    def expand(self, inputs: dict):
        keyed = {name: inputs[name] | f"Key{name.title()}" >> beam.WithKeys(lambda _: "poll") for name in INPUTS}
        return keyed | "ByPoll" >> beam.CoGroupByKey() | "Commit" >> beam.ParDo(_CommitFn(*self._args))
