"""Articles wait on disk while the run decides about them, so that no step holds a run's articles in memory.

The steps that see a whole run at once (the already-stored check, story assignment) need only an
article's id, order and link, and a runner keeps everything that crosses such a step in memory (the
in-process runner) or shuffles it (a cluster). So ``StageArticles`` writes each bundle's articles, each
followed by its story features, to one file under the run's ``_tmp/<run_id>/staged/``, through Beam's
filesystems so any worker can read it, and passes on an ``ArticleRef`` in each article's place. Story
assignment reads the features back as their turn comes (``staged_features``): the next ``WINDOW``
articles in its order at a time, each staged file they are in read once, forwards, so it holds the run's
refs and one window's features, and reads files sequentially even from an object store.
``UnstageArticles`` takes the refs that survived, with their story assignments, groups them by staged
file (small records: offset, link, story), reads each file in file order, a chunk of articles at a time,
and emits the chosen articles with their story fields.

What crosses a stage boundary per article is therefore its ref (about 300 bytes) and its placement (under
200 bytes), never the article or its features. A staged file is complete before any ref to it leaves
its bundle (the file is closed in ``finish_bundle``); a retried bundle writes a file of its own and the
refs of the failed attempt are discarded with it. Staged files live and die with the run's ``_tmp``
directory: the CLI removes it when the run ends, and the next run removes what a killed run left.
"""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, BinaryIO

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipelines.failures import Guarded, attempt, describe
from pipelines.records import Article, ArticleRef, Assignment
from pipelines.stories.features import ArticleFeatures

_LENGTH = 8  # bytes of the big-endian length before each pickled record
CHUNK = 100  # articles read back per element
WINDOW = 5000  # articles whose features staged_features reads at a time


def encode_record(record: Any) -> bytes:
    """A record (an article or its features) as it is appended to a staged file."""
    data = pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(_LENGTH, "big") + data


def read_record(handle: BinaryIO, offset: int) -> Any:
    """The record written at ``offset`` of a staged file."""
    handle.seek(offset)
    head = handle.read(_LENGTH)
    size = int.from_bytes(head, "big")
    data = handle.read(size)
    if len(head) < _LENGTH or len(data) < size:
        raise EOFError(f"staged file ends inside the record at offset {offset}")
    return pickle.loads(data)  # our own file, written by this run


def read_features(handle: BinaryIO, ref: ArticleRef) -> ArticleFeatures:
    """The story features of ``ref``'s article, from its staged file."""
    features = read_record(handle, ref.features_offset)
    if not isinstance(features, ArticleFeatures) or features.article_id != ref.article_id:
        raise ValueError(f"{ref.file} holds no features of {ref.article_id} at {ref.features_offset}")
    return features


def staged_features(ordered: list[ArticleRef], failed: list[tuple[ArticleRef, str]],
                    window: int = WINDOW) -> Iterator[ArticleFeatures]:
    """The features of ``ordered``'s articles, in that order. They are read ``window`` articles at a time,
    each staged file those articles are in once, in file order; an article whose features cannot be read
    (its file gone or damaged) goes to ``failed`` instead, with what went wrong."""
    for start in range(0, len(ordered), window):
        batch = ordered[start:start + window]
        by_file: dict[str, list[ArticleRef]] = {}
        for ref in batch:
            by_file.setdefault(ref.file, []).append(ref)
        loaded: dict[str, ArticleFeatures] = {}
        for file, refs in by_file.items():
            loaded.update(_read_file(file, sorted(refs, key=lambda r: r.features_offset), failed))
        for ref in batch:
            features = loaded.pop(ref.article_id, None)
            if features is not None:
                yield features


def _read_file(file: str, refs: list[ArticleRef], failed: list[tuple[ArticleRef, str]]) -> dict[str, ArticleFeatures]:
    out: dict[str, ArticleFeatures] = {}
    tried: set[str] = set()  # each article fails once, whatever fails after it was read
    try:
        with FileSystems.open(file) as handle:
            for ref in refs:
                tried.add(ref.article_id)
                features, error = attempt(partial(read_features, handle, ref))
                if features is None:
                    failed.append((ref, error or "no features"))
                else:
                    out[ref.article_id] = features
    except Exception as e:  # the file cannot be opened (or read on): each of its articles not tried fails
        failed.extend((ref, describe(e)) for ref in refs if ref.article_id not in tried)
    return out


class _StageFn(beam.DoFn):
    def __init__(self, directory: str):
        self._directory = directory

    def start_bundle(self) -> None:
        self._file: str | None = None
        self._handle: BinaryIO | None = None
        self._offset = 0

    def process(self, item: tuple[Article, ArticleFeatures]) -> Iterator[ArticleRef]:
        article, features = item
        if self._handle is None:
            self._file = f"{self._directory}/{uuid.uuid4().hex}.articles"
            self._handle = FileSystems.create(self._file)
        article_record = encode_record(article)
        features_record = encode_record(features)  # both encoded before writing: a failure leaves no half
        self._handle.write(article_record + features_record)
        assert self._file is not None
        yield ArticleRef(article.article_id, article.url, article.feed_url, article.published_at, self._file,
                         self._offset, self._offset + len(article_record))
        self._offset += len(article_record) + len(features_record)

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

    offset: int
    url: str
    feed_url: str
    story_id: str
    duplicate_of: str | None


def _placements(joined: tuple[str, dict[str, list]]) -> Iterator[tuple[str, Placement]]:
    _, groups = joined
    for file, offset, url, feed_url in groups["ref"]:
        for story_id, duplicate_of in groups["assignment"]:
            yield file, Placement(offset, url, feed_url, story_id, duplicate_of)


def in_chunks(grouped: tuple[str, Iterable[Placement]]) -> Iterator[tuple[str, tuple[Placement, ...]]]:
    """A staged file's placements in file order, ``CHUNK`` at a time: each chunk is one element, so a failure
    rejects that chunk's articles and the failure mechanism never buffers more than a chunk's articles."""
    file, placements = grouped
    ordered = sorted(placements, key=lambda p: p.offset)
    for start in range(0, len(ordered), CHUNK):
        yield file, tuple(ordered[start:start + CHUNK])


def unstage(chunk: tuple[str, tuple[Placement, ...]]) -> Iterator[Article]:
    """The articles of a chunk of placements, with their stories."""
    file, placements = chunk
    with FileSystems.open(file) as handle:
        for placement in placements:
            yield read_record(handle, placement.offset).with_story(placement.story_id, placement.duplicate_of)


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
                "ref": refs | "KeyRefs" >> beam.Map(lambda r: (r.article_id, (r.file, r.offset, r.url, r.feed_url))),
                "assignment": assignments | "KeyAssignments" >> beam.Map(_keyed_assignment),
            }
            | "Join" >> beam.CoGroupByKey()
            | "Place" >> beam.FlatMap(_placements)
            | "ByFile" >> beam.GroupByKey()
            | "InChunks" >> beam.FlatMap(in_chunks)
            | "Unstage" >> Guarded(beam.FlatMap(unstage), "write")
        )


def _keyed_assignment(a: Assignment) -> tuple[str, tuple[str, str | None]]:
    return a.article_id, (a.story_id, a.duplicate_of)
