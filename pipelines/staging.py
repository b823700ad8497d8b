"""Articles wait on disk while the run decides about them, so that no step holds a run's articles in memory.

The steps that see a whole run at once (the already-stored check, story assignment) need only an
article's id, order, link and story features, and a runner keeps everything that crosses such a step in
memory (the in-process runner) or shuffles it (a cluster). So ``StageArticles`` writes each bundle's
articles to one file under the run's ``_tmp/<run_id>/staged/``, through Beam's filesystems so any worker
can read it, and passes on an ``ArticleRef`` in each article's place. ``UnstageArticles`` takes the refs
that survived, with their story assignments, groups them by staged file (small records: position, link,
story), reads each file once from start to end, and emits the chosen articles with their story fields.

What crosses a stage boundary per article is therefore its ref (its features make it about 2 KB) and its
placement (under 200 bytes), never the article. A staged file is complete before any ref to it leaves
its bundle (the file is closed in ``finish_bundle``); a retried bundle writes a file of its own and the
refs of the failed attempt are discarded with it. Staged files live and die with the run's ``_tmp``
directory: the CLI removes it when the run ends, and the next run removes what a killed run left.
"""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipelines.failures import Guarded
from pipelines.records import Article, ArticleRef, Assignment
from pipelines.stories.features import ArticleFeatures

_LENGTH = 8  # bytes of the big-endian length before each pickled article


def write_article(handle: BinaryIO, article: Article) -> None:
    data = pickle.dumps(article, protocol=pickle.HIGHEST_PROTOCOL)  # before writing: a failure leaves no half
    handle.write(len(data).to_bytes(_LENGTH, "big") + data)


def read_articles(handle: BinaryIO, positions: Iterable[int]) -> Iterator[tuple[int, Article]]:
    """The articles at ``positions`` of a staged file, in file order; unpickles only those."""
    wanted = set(positions)
    position = 0
    while wanted:
        head = handle.read(_LENGTH)
        if not head:
            raise EOFError(f"staged file ends before position(s) {sorted(wanted)[:5]}")
        data = handle.read(int.from_bytes(head, "big"))
        if position in wanted:
            wanted.discard(position)
            yield position, pickle.loads(data)  # our own file, written by this run
        position += 1


class _StageFn(beam.DoFn):
    def __init__(self, directory: str):
        self._directory = directory

    def start_bundle(self) -> None:
        self._file: str | None = None
        self._handle: BinaryIO | None = None
        self._written = 0

    def process(self, item: tuple[Article, ArticleFeatures]) -> Iterator[ArticleRef]:
        article, features = item
        if self._handle is None:
            self._file = f"{self._directory}/{uuid.uuid4().hex}.articles"
            self._handle = FileSystems.create(self._file)
        write_article(self._handle, article)
        assert self._file is not None
        yield ArticleRef(article.article_id, article.url, article.feed_url, article.published_at, self._file,
                         self._written, features)
        self._written += 1

    def finish_bundle(self) -> None:
        if self._handle is not None:
            self._handle.close()


class StageArticles(beam.PTransform):
    """(Article, ArticleFeatures) -> ``main`` (ArticleRef) and ``rejects`` (articles that could not be
    staged, stage ``write``)."""

    def __init__(self, directory: str):
        super().__init__()
        self._directory = directory

    def expand(self, articles):
        return articles | "Stage" >> Guarded(beam.ParDo(_StageFn(self._directory)), "write")


@dataclass(frozen=True)
class Placement:
    """An article to write: where it waits in its staged file, its entry (for a reject) and its story."""

    position: int
    url: str
    feed_url: str
    story_id: str
    duplicate_of: str | None


def _placements(joined: tuple[str, dict[str, list]]) -> Iterator[tuple[str, Placement]]:
    _, groups = joined
    for file, position, url, feed_url in groups["ref"]:
        for story_id, duplicate_of in groups["assignment"]:
            yield file, Placement(position, url, feed_url, story_id, duplicate_of)


def unstage(grouped: tuple[str, Iterable[Placement]]) -> Iterator[Article]:
    """The placed articles of one staged file, with their stories."""
    file, placements = grouped
    by_position = {p.position: p for p in placements}
    with FileSystems.open(file) as handle:
        for position, article in read_articles(handle, by_position):
            placement = by_position[position]
            yield article.with_story(placement.story_id, placement.duplicate_of)


class UnstageArticles(beam.PTransform):
    """``{"refs": ArticleRef, "assignments": Assignment}`` -> ``main`` (Article with its story fields, for
    each ref that has an assignment) and ``rejects`` (stage ``write``: a staged file that cannot be read
    rejects the articles placed in it).

    A ref without an assignment is an article the stories stage rejected; it is not written.
    """

    def expand(self, inputs):
        refs, assignments = inputs["refs"], inputs["assignments"]
        return (
            {
                "ref": refs | "KeyRefs" >> beam.Map(lambda r: (r.article_id, (r.file, r.position, r.url, r.feed_url))),
                "assignment": assignments | "KeyAssignments" >> beam.Map(_keyed_assignment),
            }
            | "Join" >> beam.CoGroupByKey()
            | "Place" >> beam.FlatMap(_placements)
            | "ByFile" >> beam.GroupByKey()
            | "Unstage" >> Guarded(beam.FlatMap(unstage), "write")
        )


def _keyed_assignment(a: Assignment) -> tuple[str, tuple[str, str | None]]:
    return a.article_id, (a.story_id, a.duplicate_of)
